package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/netdeploy/netdeploy/imaging"
)

// tableTime is how the table shows times, in the zone they were recorded in.
const tableTime = "2006-01-02 15:04:05"

// CSVHeader is the first row WriteCSV writes.
var CSVHeader = []string{"mac", "ip", "image", "sha256", "start", "end", "bytes", "result", "reason"}

// WriteTable writes recs as a table aligned with spaces: MAC, IP, IMAGE,
// RESULT, BYTES, DURATION, START, SHA256 (first 12 digits), REASON. Control
// characters in the text fields are shown as spaces so that every record
// stays on one line.
func WriteTable(w io.Writer, recs []Record) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tIP\tIMAGE\tRESULT\tBYTES\tDURATION\tSTART\tSHA256\tREASON")
	for _, r := range recs {
		sum := r.SHA256
		if len(sum) > 12 {
			sum = sum[:12]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(r.MAC), cell(r.IP), cell(r.Image), cell(r.Result), SizeString(r.Bytes),
			durationString(r.Duration()), timeString(r.Start), cell(sum), cell(r.Reason))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// WriteCSV writes recs as CSV (RFC 4180) with CSVHeader first; times are
// RFC 3339 with nanoseconds, bytes a whole number.
func WriteCSV(w io.Writer, recs []Record) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	for _, r := range recs {
		row := []string{r.MAC, r.IP, r.Image, r.SHA256, csvTime(r.Start), csvTime(r.End), strconv.FormatInt(r.Bytes, 10), r.Result, r.Reason}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// SizeString shows a byte count in binary units: "512B", "1.5MiB".
func SizeString(n int64) string { return imaging.SizeString(n) }

func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(tableTime)
}

func csvTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

func durationString(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
