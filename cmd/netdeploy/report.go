package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/netdeploy/netdeploy/imaging/report"
)

// newReport builds "netdeploy report": the deployment journal,
// data_dir/deployments.jsonl, as a table or CSV.
func newReport() *cobra.Command {
	var asCSV bool
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Show the deployments done so far (data_dir/" + report.FileName + ") as a table or CSV",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadDirs(cmd.Flags())
			if err != nil {
				return err
			}
			return runReport(cfg.DataDir, asCSV, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVar(&asCSV, "csv", false, "print CSV with a header row")
	addDirFlags(cmd.Flags(), false)
	return cmd
}

// runReport is "netdeploy report": the records of dataDir's journal on
// out, notes (no journal yet, a torn last line skipped) on errOut.
func runReport(dataDir string, asCSV bool, out, errOut io.Writer) error {
	path := report.Path(dataDir)
	recs, skipped, err := report.Scan(path)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(errOut, "netdeploy: no deployments recorded yet (no %s)\n", path)
		if asCSV {
			return report.WriteCSV(out, nil)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if skipped > 0 {
		fmt.Fprintf(errOut, "netdeploy: skipped %d torn line at the end of %s (a write cut short by a crash, or in progress)\n", skipped, path)
	}
	if asCSV {
		return report.WriteCSV(out, recs)
	}
	if len(recs) == 0 {
		fmt.Fprintf(out, "no deployments recorded in %s\n", path)
		return nil
	}
	if err := report.WriteTable(out, recs); err != nil {
		return err
	}
	failed := 0
	for _, r := range recs {
		if r.Result == report.ResultFailed {
			failed++
		}
	}
	noun := "deployments"
	if len(recs) == 1 {
		noun = "deployment"
	}
	fmt.Fprintf(out, "\n%d %s: %d done, %d failed\n", len(recs), noun, len(recs)-failed, failed)
	return nil
}
