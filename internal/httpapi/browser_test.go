package httpapi_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser test drives the run UI in Debian's chromium through chromedp: an order from
// the demo store watched to completion on its run page, a 3-D Secure order completed from
// the run page, a review approved from the queue. Screenshots go to .artifacts/browser at
// the repository root (git-ignored; BROWSER_ARTIFACTS overrides). Without chromium (or
// CHROMIUM naming one) it is skipped, and says so.

func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("SKIPPED: no chromium on PATH (apt-get install -y chromium, or set CHROMIUM): the run UI's browser test did not run")
	return ""
}

func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("BROWSER_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", ".artifacts", "browser")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBrowserStoreRunAndReview(t *testing.T) {
	exe := chromium(t)
	dir := artifacts(t)
	e := start(t)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.WindowSize(1280, 900))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelTimeout()

	shot := func(name string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tab *chromedp.Target) (chromedp.Void, error) {
			png, err := chromedp.FullScreenshot(100)(ctx, tab)
			if err != nil {
				return chromedp.Void{}, err
			}
			path := filepath.Join(dir, name+".png")
			t.Logf("screenshot %s", path)
			return chromedp.Void{}, os.WriteFile(path, png, 0o644)
		}
	}
	// order places one from the demo store with the chosen card and returns its checkout ID.
	order := func(card string) string {
		t.Helper()
		var url string
		err := chromedp.Do(ctx,
			chromedp.Navigate(e.base+"/ui/store"),
			chromedp.WaitVisible(chromedp.CSS(`#place`)),
			chromedp.SetValue(chromedp.CSS(`#qty_tee-jetstream`), "1"),
			chromedp.SetValue(chromedp.CSS(`#qty_stickers`), "2"),
			chromedp.SetValue(chromedp.CSS(`#email`), "ada@example.com"),
			chromedp.Click(chromedp.CSS(`input[name=card][value="`+card+`"]`)),
			chromedp.Click(chromedp.CSS(`#place`)),
		)
		for err == nil && !strings.Contains(url, "/ui/checkouts/") { // the form posts, then redirects
			url, err = chromedp.Run(ctx, chromedp.Location())
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("place an order with card %s: %v", card, err)
		}
		id := url[strings.LastIndex(url, "/")+1:]
		if !strings.HasPrefix(id, "co_") {
			t.Fatalf("landed on %s, not a run page", url)
		}
		return id
	}
	// status waits for the run page on screen to show want (the page updates itself).
	status := func(want string) chromedp.Action[chromedp.Void] {
		return chromedp.WaitVisible(chromedp.CSS(`#run[data-status="` + want + `"]`))
	}

	// 0. The store shows the stock and a running total of the cart as quantities are typed.
	err := chromedp.Do(ctx,
		chromedp.Navigate(e.base+"/ui/store"),
		chromedp.WaitVisible(chromedp.CSS(`#place`)),
		chromedp.SetValue(chromedp.CSS(`#qty_tee-jetstream`), ""), chromedp.SendKeys(chromedp.CSS(`#qty_tee-jetstream`), "1"),
		chromedp.SetValue(chromedp.CSS(`#qty_stickers`), ""), chromedp.SendKeys(chromedp.CSS(`#qty_stickers`), "2"),
		chromedp.SetValue(chromedp.CSS(`#qty_hoodie-saga`), ""), chromedp.SendKeys(chromedp.CSS(`#qty_hoodie-saga`), "9"),
		shot("0-store-total"),
	)
	store, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('stock_tee-jetstream').textContent + ' | ' + document.getElementById('cart-sum').textContent`))
	if want := "50 in stock | $574.89"; err != nil || store != want { // 25.00 + 2 × 4.99 + 9 × 59.99
		t.Errorf("store shows %q (%v), want %q", store, err, want)
	}
	if over, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById('qty_hoodie-saga').closest('.product').classList.contains('over')`)); err != nil || !over {
		t.Errorf("9 hoodies of 3 in stock not marked (%v)", err)
	}

	// 1. A card that succeeds: the run page goes to completed by itself.
	id := order("visa")
	if err := chromedp.Do(ctx, status("completed"), shot("1-run-completed")); err != nil {
		t.Fatalf("run page of %s never showed completed: %v", id, err)
	}
	doneSteps, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('.dag g.s-done').length`))
	if err != nil || doneSteps != 8 {
		t.Errorf("DAG shows %d steps done (%v), want 8", doneSteps, err)
	}
	if c := e.ended(t, id); c.Status != "completed" {
		t.Fatalf("API says %s", c.Status)
	}

	// 2. 3-D Secure: the run page waits, the customer completes it, the run completes.
	id = order("3ds")
	err = chromedp.Do(ctx, status("waiting"), shot("2-run-3ds-waiting"),
		chromedp.Click(chromedp.CSS(`button[value=complete]`)),
		status("completed"), shot("3-run-3ds-completed"))
	if err != nil {
		t.Fatalf("3-D Secure run %s: %v", id, err)
	}

	// 3. Held for review: approve it from the queue, then its run completes.
	id = order("review")
	err = chromedp.Do(ctx, status("waiting"),
		chromedp.Navigate(e.base+"/ui/reviews"),
		chromedp.SendKeys(chromedp.CSS(`input[name=token]`), adminToken),
		chromedp.Submit(chromedp.CSS(`form.login`)),
		chromedp.WaitVisible(chromedp.CSS(`section.review[data-checkout="`+id+`"]`)),
		shot("4-review-queue"),
		chromedp.Click(chromedp.CSS(`section.review[data-checkout="`+id+`"] button[value=approve]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
		chromedp.Navigate(e.base+"/ui/checkouts/"+id),
		status("completed"), shot("5-run-approved"))
	if err != nil {
		t.Fatalf("review of %s: %v", id, err)
	}
	if c := e.ended(t, id); c.Status != "completed" {
		t.Fatalf("approved checkout ended %s", c.Status)
	}

	// 4. The list at phone width.
	err = chromedp.Do(ctx, chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(e.base+"/ui/"), chromedp.WaitVisible(chromedp.CSS(`table.runs`)), shot("6-list-phone"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('table.runs tbody tr').length`))
	if err != nil || rows != 3 {
		t.Errorf("list shows %d runs (%v), want 3", rows, err)
	}
}
