package cli

import (
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// progress returns an operation watcher that draws the phase (and a bar
// when the total is known) on a terminal, and nil, meaning quiet, when
// stderr is not a terminal or the output is JSON.
func (a *app) progress(format, title string) func(api.Operation) {
	if format == "json" || !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	var bar *progressbar.ProgressBar
	var phase string
	var total int64 = -2
	return func(op api.Operation) {
		p := op.Progress
		if bar == nil || p.Total != total {
			if bar != nil {
				bar.Finish()
			}
			max := p.Total
			if max <= 0 {
				max = -1 // spinner
			}
			bar = progressbar.NewOptions64(max,
				progressbar.OptionSetWriter(os.Stderr),
				progressbar.OptionSetDescription(title),
				progressbar.OptionShowCount(),
				progressbar.OptionClearOnFinish(),
				progressbar.OptionSpinnerType(14),
			)
			total = p.Total
		}
		if p.Phase != phase {
			phase = p.Phase
			bar.Describe(title + ": " + phase)
		}
		if p.Total > 0 {
			bar.Set64(p.Done)
		} else {
			bar.Add(1)
		}
		if op.Status != api.OpRunning {
			bar.Finish()
			bar.Clear()
		}
	}
}
