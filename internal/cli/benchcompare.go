package cli

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/polyvisor/polyvisor/internal/evaluation/benchreport"
)

func (a *app) benchCompareCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "compare A B [--format table|json]",
		Short: "Set two bench reports side by side: each figure's change from A to B, and whether it is beyond the intervals",
		Long: `compare reads two reports (report.json, or the directories bench wrote them
to) and shows, for every figure of every class in both, A's value and 95 %
interval, B's, the change B/A - 1, and whether the change is beyond the
intervals (they do not overlap). Workloads compare their ratio to native,
lifecycle figures their median. Classes and figures only one report has are
listed as such. It needs no daemon.`,
		Args: exactArgs(2, "two reports, A and B (report.json files or the directories holding them)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format, "table", "json"); err != nil {
				return err
			}
			var reports [2]*benchreport.Report
			var paths [2]string
			for i, arg := range args {
				var err error
				if paths[i], reports[i], err = readReport(arg); err != nil {
					return err
				}
			}
			c := benchreport.Compare(reports[0], reports[1])
			c.A.Source, c.B.Source = paths[0], paths[1]
			if format == "json" {
				return printStructured(a.stdout, "json", c)
			}
			return benchreport.WriteComparison(a.stdout, c)
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output: table or json")
	return cmd
}

// readReport reads the report at path: a report.json, or a directory
// holding one. It returns the file it read.
func readReport(path string) (string, *benchreport.Report, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, "report.json")
	}
	f, err := os.Open(path)
	if err != nil {
		return path, nil, fmt.Errorf("read report: %w", err)
	}
	defer f.Close()
	r, err := benchreport.ReadJSON(f)
	if err != nil {
		return path, nil, fmt.Errorf("%s: %w", path, err)
	}
	return path, r, nil
}
