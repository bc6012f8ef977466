// Package microx is what the services' request-reply endpoints (nats.go's micro) share:
// strict request decoding, error replies with a code the caller can act on, JSON replies,
// the signed publish of a decision an endpoint takes, and the request one part makes of
// another's endpoint.
package microx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// Error is a request the caller must change: Code is the micro error code of the reply
// ("400", "404") and Description says what is wrong.
type Error struct {
	Code        string
	Description string
}

func (e *Error) Error() string { return e.Description }

// BadRequest is a "400" error reply.
func BadRequest(format string, args ...any) error {
	return &Error{"400", fmt.Sprintf(format, args...)}
}

// NotFound is a "404" error reply.
func NotFound(format string, args ...any) error {
	return &Error{"404", fmt.Sprintf(format, args...)}
}

// Conflict is a "409" error reply: the request is well formed, but the state of what it is
// about does not allow it (the reason says why).
func Conflict(format string, args ...any) error {
	return &Error{Code: "409", Description: fmt.Sprintf(format, args...)}
}

// Decode decodes the request body of subject strictly into v (events.DecodeStrict), so a
// request with a misspelt field is refused with the same words an event would be. An
// empty or malformed body is a BadRequest.
func Decode(subject events.Subject, data []byte, v any) error {
	if len(data) == 0 {
		return BadRequest("%s needs a JSON object", subject)
	}
	if err := events.DecodeStrict(data, v); err != nil {
		return BadRequest("%s request: %v", subject, err)
	}
	return nil
}

// Handler adapts handle to micro: its result is the JSON reply, an *Error its error reply,
// and any other error a "500" that is logged and not shown to the caller.
func Handler(log *slog.Logger, handle func(data []byte) (any, error)) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		reply, err := handle(req.Data())
		var rerr *Error
		switch {
		case errors.As(err, &rerr):
			err = req.Error(rerr.Code, rerr.Description, nil)
		case err != nil:
			log.Error("request failed", "subject", req.Subject(), "err", err)
			err = req.Error("500", "internal error, please retry", nil)
		default:
			err = req.RespondJSON(reply)
		}
		if err != nil {
			log.Warn("reply failed", "subject", req.Subject(), "err", err)
		}
	})
}

// Request asks the endpoint of subject with req as JSON (nil: an empty request) and decodes
// its reply into out. An error reply comes back as an *Error with the endpoint's code and
// words; no answer (no responder, or none before ctx ends) as the NATS error, wrapped.
func Request(ctx context.Context, nc *nats.Conn, subject events.Subject, req, out any) error {
	body := []byte{}
	if req != nil {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return err
		}
	}
	msg, err := nc.RequestWithContext(ctx, string(subject), body)
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return fmt.Errorf("%s: %w", subject, &Error{Code: code, Description: msg.Header.Get(micro.ErrorHeader)})
	}
	if err := json.Unmarshal(msg.Data, out); err != nil {
		return fmt.Errorf("%s reply: %w", subject, err)
	}
	return nil
}

// Publish stores e, signed as service's, in its stream with its ID as Nats-Msg-Id, and
// waits for the ack: what an endpoint that decides something publishes. A second request
// for the same decision comes back as a duplicate (the ack's Duplicate).
func Publish(ctx context.Context, js jetstream.JetStream, keys *events.Keys, service string, e events.Envelope) (*jetstream.PubAck, error) {
	data, err := e.Encode()
	if err != nil {
		return nil, err
	}
	h, err := keys.Header(service, e.Type, data)
	if err != nil {
		return nil, err
	}
	return js.PublishMsg(ctx, &nats.Msg{Subject: string(e.Type), Data: data, Header: h}, jetstream.WithMsgID(e.ID))
}

// Refusal reports an error reply that refuses the request for what it holds (a 4xx code:
// malformed, unknown, conflicting), which asking again will not change; any other error
// (no answer, a 500, a 503) may pass.
func Refusal(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) && len(e.Code) == 3 && e.Code[0] == '4' {
		return e, true
	}
	return nil, false
}

// Endpoint is one request-reply endpoint of a service: its name in micro's discovery, the
// subject it answers, and what answers it (through Handler).
type Endpoint struct {
	Name    string
	Subject events.Subject
	Handle  func(data []byte) (any, error)
}

// AddService starts the micro service described by cfg with its endpoints. Stop the returned
// service to stop serving.
func AddService(nc *nats.Conn, log *slog.Logger, cfg micro.Config, endpoints ...Endpoint) (micro.Service, error) {
	svc, err := micro.AddService(nc, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: start service: %w", cfg.Name, err)
	}
	for _, e := range endpoints {
		if err := svc.AddEndpoint(e.Name, Handler(log, e.Handle), micro.WithEndpointSubject(string(e.Subject))); err != nil {
			return nil, errors.Join(fmt.Errorf("%s: endpoint %s: %w", cfg.Name, e.Subject, err), svc.Stop())
		}
	}
	return svc, nil
}
