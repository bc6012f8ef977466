package money

import (
	"testing"

	"github.com/shopspring/decimal"
)

func TestToMinor(t *testing.T) {
	tests := []struct {
		amount   string
		currency string
		want     int64
		wantErr  bool
	}{
		{"12.34", "USD", 1234, false},
		{"0.01", "EUR", 1, false},
		{"75.03", "USD", 7503, false},
		{"10340", "JPY", 10340, false},
		{"100", "USD", 10000, false},
		{"0.1", "USD", 10, false},
		{"12.345", "USD", 0, true}, // finer than a cent: round first, deliberately
		{"1.5", "JPY", 0, true},    // yen have no minor unit
		{"1.00", "XXX", 0, true},   // unknown currency: never a guessed exponent
		{"99999999999999999", "USD", 0, true},
	}
	for _, tt := range tests {
		got, err := ToMinor(decimal.RequireFromString(tt.amount), tt.currency)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ToMinor(%s %s) = %d, %v; want %d (error %v)", tt.amount, tt.currency, got, err, tt.want, tt.wantErr)
		}
		if err != nil {
			continue
		}
		back, err := FromMinor(got, tt.currency)
		if err != nil || !back.Equal(decimal.RequireFromString(tt.amount)) {
			t.Errorf("FromMinor(%d %s) = %s, %v; want %s", got, tt.currency, back, err, tt.amount)
		}
	}
}

func TestRound(t *testing.T) {
	tests := []struct{ in, currency, want string }{
		{"3.625", "USD", "3.63"}, // half away from zero
		{"4.53125", "USD", "4.53"},
		{"-0.005", "EUR", "-0.01"},
		{"839.5", "JPY", "840"},
		{"839.4", "JPY", "839"},
	}
	for _, tt := range tests {
		got, err := Round(decimal.RequireFromString(tt.in), tt.currency)
		if err != nil || !got.Equal(decimal.RequireFromString(tt.want)) {
			t.Errorf("Round(%s %s) = %s, %v; want %s", tt.in, tt.currency, got, err, tt.want)
		}
	}
}

func TestFormat(t *testing.T) {
	tests := []struct{ in, currency, want string }{
		{"1234.5", "USD", "$1,234.50"},
		{"0.99", "EUR", "€0.99"},
		{"10340", "JPY", "¥10,340"},
		{"-5", "GBP", "-£5.00"},
		{"1000000", "USD", "$1,000,000.00"},
		{"7", "XXX", "7 XXX"},
	}
	for _, tt := range tests {
		if got := Format(decimal.RequireFromString(tt.in), tt.currency); got != tt.want {
			t.Errorf("Format(%s %s) = %q, want %q", tt.in, tt.currency, got, tt.want)
		}
	}
}
