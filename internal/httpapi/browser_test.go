package httpapi_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/app"
	"github.com/jetcheckout/jetcheckout/internal/httpapi"
)

// The browser test drives the run UI in Debian's chromium through chromedp: an order from
// the demo store watched to completion on its run page, a 3-D Secure order completed from
// the run page, a declined order, a review approved from the queue. Each page is looked at
// on a wide screen (1400 px) and a phone's (390 px): a screenshot of each, and no label may
// overflow its box. Screenshots go to .artifacts/browser at the repository root
// (git-ignored; BROWSER_ARTIFACTS overrides). Without chromium (or CHROMIUM naming one) it
// is skipped, and says so.

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

// overflowJS lists the labels on the page that need more room than their box gives them:
// each DAG node's texts against its rect, and the page's text boxes (an inline one, which
// has no box of its own, against its parent's). The DAG's own box and the events' raw JSON
// scroll sideways by design; what is in them must still fit.
const overflowJS = `(() => {
  const bad = [];
  const say = (el) => (el.tagName + "." + (el.getAttribute("class") || "")).toLowerCase() + ' "' + el.textContent.trim().replace(/\s+/g, " ").slice(0, 48) + '"';
  document.querySelectorAll("svg.dag g.node").forEach((g) => {
    const box = g.querySelector("rect").getBBox();
    g.querySelectorAll("text").forEach((t) => {
      const b = t.getBBox();
      // Inside the box's border (2 px) with room to spare: a name that touches it overflows to the eye.
      if (b.x < box.x + 4 || b.x + b.width > box.x + box.width - 4) bad.push(say(t) + " is " + Math.ceil(b.width) + " wide at " + Math.round(b.x - box.x) + " in its " + box.width + " box");
    });
  });
  const labels = ".badge, .chip, .wlabel, .wdur, th, td, dt, dd, h1, h2, h3, label, button, .top a, .product span, .pname, summary span, .notice, .card p, .card li, .sub";
  document.querySelectorAll(labels).forEach((el) => {
    if (el.closest("pre") || !el.getClientRects().length) return;
    if (getComputedStyle(el).display === "inline") {
      const r = el.getBoundingClientRect(), p = el.parentElement.getBoundingClientRect();
      if (r.left < p.left - 1 || r.right > p.right + 1) bad.push(say(el) + " sticks out of its parent by " + Math.ceil(Math.max(p.left - r.left, r.right - p.right)) + " px");
    } else if (el.scrollWidth > el.clientWidth + 1) {
      bad.push(say(el) + " needs " + el.scrollWidth + " px, has " + el.clientWidth);
    }
  });
  const page = document.documentElement;
  if (page.scrollWidth > page.clientWidth + 1) bad.push("the page is " + page.scrollWidth + " px wide on a " + page.clientWidth + " px screen");
  return bad;
})()`

// screens are the widths each page is looked at: a desktop's and a phone's.
var screens = []struct {
	name          string
	width, height int64
}{{"wide", 1400, 900}, {"phone", 390, 844}}

func TestBrowserStoreRunAndReview(t *testing.T) {
	exe := chromium(t)
	dir := artifacts(t)
	// The carrier is down for the last order: its label is given up on, and the run page
	// re-drives it once the carrier is back.
	var carrierDown atomic.Bool
	e := startWith(t, func(c *app.Config) {
		c.Faults = map[string][]app.Fault{events.ServiceShipping: {failWhile(&carrierDown, events.FulfilmentRequested)}}
	})

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.WindowSize(1400, 900))
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
	// look takes a screenshot of the page on screen at each screen width and fails the test
	// for each label that overflows its box there; then it is wide again.
	look := func(name string) {
		t.Helper()
		for _, sc := range screens {
			err := chromedp.Do(ctx, chromedp.EmulateViewport(sc.width, sc.height), shot(name+"-"+sc.name))
			var bad []string
			if err == nil {
				bad, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](overflowJS))
			}
			if err != nil {
				t.Fatalf("%s at %d px: %v", name, sc.width, err)
			}
			for _, b := range bad {
				t.Errorf("%s at %d px: %s", name, sc.width, b)
			}
		}
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(screens[0].width, screens[0].height)); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/"), chromedp.WaitVisible(chromedp.CSS(`a[href="/openapi.yaml"]`))); err != nil {
		t.Fatal(err)
	}
	look("0-index")
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/ui/store"), chromedp.WaitVisible(chromedp.CSS(`#place`))); err != nil {
		t.Fatal(err)
	}
	look("0-store")

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
	if err := chromedp.Do(ctx, status("completed")); err != nil {
		t.Fatalf("run page of %s never showed completed: %v", id, err)
	}
	look("1-run-completed")
	doneSteps, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('.dag g.s-done').length`))
	if err != nil || doneSteps != 8 {
		t.Errorf("DAG shows %d steps done (%v), want 8", doneSteps, err)
	}
	if c := e.ended(t, id); c.Status != "completed" {
		t.Fatalf("API says %s", c.Status)
	}

	// 2. 3-D Secure: the run page waits, the customer completes it, the run completes.
	id = order("3ds")
	if err := chromedp.Do(ctx, status("waiting")); err != nil {
		t.Fatalf("3-D Secure run %s: %v", id, err)
	}
	look("2-run-3ds-waiting")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`button[value=complete]`)), status("completed")); err != nil {
		t.Fatalf("3-D Secure run %s: %v", id, err)
	}
	look("3-run-3ds-completed")

	// 3. A declined card: the run fails, and the steps after the payment say they never ran.
	id = order("declined")
	if err := chromedp.Do(ctx, status("failed")); err != nil {
		t.Fatalf("declined run %s: %v", id, err)
	}
	look("4-run-declined")
	notRun, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('.dag g.node')].filter((g) => g.querySelector('text.m').textContent.startsWith('not run')).map((g) => g.dataset.step)`))
	if err != nil || !slices.Contains(notRun, "create_order") || !slices.Contains(notRun, "send_order_confirmation") {
		t.Errorf("DAG of the declined run shows %v as not run (%v), want create_order and the steps after it", notRun, err)
	}
	if pending, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('.dag g.s-pending').length`)); err != nil || pending != 0 {
		t.Errorf("the ended run shows %d steps pending (%v), want none", pending, err)
	}

	// 4. Held for review: approve it from the queue, then its run completes.
	id = order("review")
	err = chromedp.Do(ctx, status("waiting"),
		chromedp.Navigate(e.base+"/ui/reviews"),
		chromedp.SendKeys(chromedp.CSS(`input[name=token]`), adminToken),
		chromedp.Submit(chromedp.CSS(`form.login`)),
		chromedp.WaitVisible(chromedp.CSS(`section.review[data-checkout="`+id+`"]`)))
	if err != nil {
		t.Fatalf("review of %s: %v", id, err)
	}
	look("5-review-queue")
	err = chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`section.review[data-checkout="`+id+`"] button[value=approve]`)),
		chromedp.WaitVisible(chromedp.CSS(`p.notice`)),
		chromedp.Navigate(e.base+"/ui/checkouts/"+id),
		status("completed"))
	if err != nil {
		t.Fatalf("review of %s: %v", id, err)
	}
	look("6-run-approved")
	if c := e.ended(t, id); c.Status != "completed" {
		t.Fatalf("approved checkout ended %s", c.Status)
	}

	// 5. The list of runs (signed in by the review queue's sign-in).
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/ui/"), chromedp.WaitVisible(chromedp.CSS(`table.runs`))); err != nil {
		t.Fatal(err)
	}
	look("7-list")
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('table.runs tbody tr').length`))
	if err != nil || rows != 4 {
		t.Errorf("list shows %d runs (%v), want 4", rows, err)
	}

	// 6. The carrier is down: the order completes flagged for attention. Once it is back,
	// the admin (signed in above) re-drives the label from the run page, and the flag goes.
	carrierDown.Store(true)
	id = order("visa")
	if err := chromedp.Do(ctx, status("completed"), chromedp.WaitVisible(chromedp.CSS(`form[action$="/redrive"] button`))); err != nil {
		t.Fatalf("run %s with the carrier down: %v", id, err)
	}
	look("8-run-needs-attention")
	if c := e.ended(t, id); !c.NeedsAttention {
		t.Fatalf("with the carrier down %s completed %+v, want needs_attention", id, c)
	}
	carrierDown.Store(false)
	// The run page as the admin opens it again: ended, it has no live updates.
	err = chromedp.Do(ctx,
		chromedp.Navigate(e.base+"/ui/checkouts/"+id),
		chromedp.WaitVisible(chromedp.CSS(`form[action$="/redrive"] input[name=reason]`)),
		chromedp.SendKeys(chromedp.CSS(`form[action$="/redrive"] input[name=reason]`), "the carrier is back"),
		chromedp.Click(chromedp.CSS(`form[action$="/redrive"] button`)))
	var url string
	for err == nil && !strings.Contains(url, "notice=redriven") { // the form posts, then redirects
		url, err = chromedp.Run(ctx, chromedp.Location())
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("re-drive of %s from its run page: %v", id, err)
	}
	e.until(t, id, "re-driven and settled", func(c httpapi.Checkout) bool { return c.Redrives == 1 && !c.NeedsAttention && len(c.Warnings) == 0 })
	if err := chromedp.Do(ctx, chromedp.Navigate(e.base+"/ui/checkouts/"+id), status("completed")); err != nil {
		t.Fatal(err)
	}
	look("9-run-redriven")
	if warn, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('p.notice.warn, form[action$="/redrive"]').length`)); err != nil || warn != 0 {
		t.Errorf("the re-driven run still shows %d warnings or re-drive forms (%v)", warn, err)
	}
}

// failWhile fails route with a permanent error while down is set: the step is given up on.
func failWhile(down *atomic.Bool, route events.Subject) app.Fault {
	return func(subject events.Subject, _ events.Envelope) error {
		if subject == route && down.Load() {
			return app.Permanent(errors.New("the carrier is down"))
		}
		return nil
	}
}
