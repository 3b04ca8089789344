package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/netdeploy/netdeploy/config"
	"github.com/netdeploy/netdeploy/imaging"
	"github.com/netdeploy/netdeploy/imaging/report"
)

// newImage builds "netdeploy image": describe raw images with a manifest
// and list the image store.
func newImage() *cobra.Command {
	img := &cobra.Command{
		Use:   "image",
		Short: "Describe raw images with a manifest and list the image store",
	}
	img.AddCommand(newImageAdd(), newImageList())
	return img
}

// addDirFlags registers the flags that locate data_dir and images_dir; the
// values are read with config.Load, as serve does, so the configuration
// file and NETDEPLOY_* variables count too.
func addDirFlags(fs *pflag.FlagSet, images bool) {
	d := config.Default()
	fs.String("config", "", "YAML configuration file")
	fs.String("data-dir", d.DataDir, "state directory")
	if images {
		fs.String("images-dir", "", "image store (default: data-dir/images)")
	}
}

// loadDirs reads the configuration for data_dir and images_dir.
func loadDirs(fs *pflag.FlagSet) (config.Config, error) {
	cfg, err := config.Load(fs)
	if err != nil {
		return config.Config{}, err
	}
	cfg.Finish()
	return cfg, nil
}

// exactArgs is cobra.ExactArgs as a usage error (exit status 2).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return usageError{err}
	}
	return nil
}

func newImageAdd() *cobra.Command {
	var opts imaging.AddOptions
	cmd := &cobra.Command{
		Use:   "add FILE",
		Short: "Write the manifest of a raw image (.img, .img.zst, .img.gz): name, size and sha256",
		Long: `Reads the raw image FILE (.img, or compressed .img.zst or .img.gz), measures
the size and sha256 of the uncompressed image, and writes its manifest
FILE.json beside it, replacing any manifest already there. The catalogue lists
the image once FILE is inside images_dir. WIMs carry their own metadata and
take no manifest.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadDirs(cmd.Flags())
			if err != nil {
				return err
			}
			if strings.TrimSpace(opts.Name) == "" {
				return usageError{errors.New("image add: --name is required")}
			}
			return runImageAdd(args[0], opts, cfg.ImagesDir, cmd.OutOrStdout(), cmd.ErrOrStderr(), isTerminal(cmd.ErrOrStderr()))
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&opts.Name, "name", "", "display name of the image (required)")
	fs.StringVar(&opts.Description, "description", "", "free text shown with the image")
	fs.StringVar(&opts.Arch, "arch", "", "architecture: amd64, x86, arm64, arm or ia64")
	fs.StringVar(&opts.TargetDisk, "target-disk", "", "disk the imaging agent should write, e.g. /dev/sda or nvme0n1")
	addDirFlags(fs, true)
	return cmd
}

// progressMin is the file size from which a terminal gets a progress bar.
const progressMin = 64 << 20

// runImageAdd is "netdeploy image add": it writes the manifest, reports to
// out what it wrote and where, and shows progress on errOut (a bar redrawn
// in place when tty and the file is large, a summary line at the end).
func runImageAdd(file string, opts imaging.AddOptions, imagesDir string, out, errOut io.Writer, tty bool) error {
	bar := &progressBar{w: errOut, tty: tty, now: time.Now}
	opts.Progress = bar.update
	bar.start = bar.now()
	res, err := imaging.Add(file, opts)
	bar.clear()
	if err != nil {
		var me *imaging.ManifestError
		if errors.Is(err, imaging.ErrWIM) || errors.Is(err, imaging.ErrNotRawImage) || errors.As(err, &me) {
			return usageError{err}
		}
		return err
	}
	elapsed := bar.now().Sub(bar.start)
	fmt.Fprintf(errOut, "netdeploy: read %s (%s) in %s, %s\n", file, report.SizeString(res.FileSize), elapsed.Round(100*time.Millisecond), rateString(res.FileSize, elapsed))

	m := res.Manifest
	verb := "wrote"
	if res.Replaced {
		verb = "replaced"
	}
	fmt.Fprintf(out, "%s %s\n", verb, res.ManifestPath)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  name\t%s\n", tableCell(m.Name))
	if m.Description != "" {
		fmt.Fprintf(tw, "  description\t%s\n", tableCell(m.Description))
	}
	fmt.Fprintf(tw, "  arch\t%s\n", tableCell(m.Arch))
	fmt.Fprintf(tw, "  size\t%s (%d bytes uncompressed)\n", report.SizeString(m.Size), m.Size)
	fmt.Fprintf(tw, "  sha256\t%s\n", m.SHA256)
	if m.TargetDisk != "" {
		fmt.Fprintf(tw, "  target_disk\t%s\n", tableCell(m.TargetDisk))
	}
	tw.Flush()
	if rel, ok := insideDir(imagesDir, file); ok {
		fmt.Fprintf(out, "listed in the image store %s as %s\n", imagesDir, rel)
	} else {
		fmt.Fprintf(out, "note: %s is outside the image store %s; the catalogue lists it once it is moved there with its manifest\n", file, imagesDir)
	}
	return nil
}

// insideDir reports whether file is inside dir (symbolic links resolved)
// and returns its path relative to dir, with forward slashes.
func insideDir(dir, file string) (string, bool) {
	resolve := func(p string) (string, error) {
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", err
		}
		if r, err := filepath.EvalSymlinks(abs); err == nil {
			return r, nil
		}
		return abs, nil
	}
	d, err1 := resolve(dir)
	f, err2 := resolve(file)
	if err1 != nil || err2 != nil {
		return "", false
	}
	rel, err := filepath.Rel(d, f)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// progressBar shows Add's progress: on a terminal, a bar redrawn with \r
// at most every 100ms once the file is large enough to take a while.
type progressBar struct {
	w     io.Writer
	tty   bool
	now   func() time.Time
	start time.Time
	last  time.Time // last redraw
	drawn bool
}

const barWidth = 30

func (p *progressBar) update(done, total int64) {
	if !p.tty || total < progressMin {
		return
	}
	now := p.now()
	if p.drawn && now.Sub(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last, p.drawn = now, true
	fmt.Fprint(p.w, "\r"+barLine(done, total, now.Sub(p.start))+"\x1b[K")
}

// clear removes the bar, if one was drawn.
func (p *progressBar) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.drawn = false
	}
}

// barLine is one frame: "[#######.......]  42%  123.4 MiB/s  ETA 0:12".
func barLine(done, total int64, elapsed time.Duration) string {
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	frac = min(max(frac, 0), 1)
	fill := int(frac * barWidth)
	eta := "--:--"
	if done > 0 && elapsed > 0 {
		left := time.Duration(float64(elapsed) * float64(total-done) / float64(done))
		eta = clockString(left)
	}
	return fmt.Sprintf("[%s%s] %3d%%  %s  ETA %s", strings.Repeat("#", fill), strings.Repeat(".", barWidth-fill), int(frac*100), rateString(done, elapsed), eta)
}

// rateString is a throughput in MiB/s.
func rateString(n int64, d time.Duration) string {
	if d <= 0 {
		return "-- MiB/s"
	}
	return fmt.Sprintf("%.1f MiB/s", float64(n)/(1<<20)/d.Seconds())
}

// clockString shows a duration as M:SS or H:MM:SS.
func clockString(d time.Duration) string {
	s := int64(d.Round(time.Second) / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// tableCell shows s on one line ("-" when empty).
func tableCell(s string) string {
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

func newImageList() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the image store's catalogue and its problems",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadDirs(cmd.Flags())
			if err != nil {
				return err
			}
			return runImageList(cfg.ImagesDir, asJSON, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: {images_dir, images, problems}")
	addDirFlags(cmd.Flags(), true)
	return cmd
}

// imageListJSON is "image list --json".
type imageListJSON struct {
	ImagesDir string            `json:"images_dir"`
	Images    []imaging.Image   `json:"images"`
	Problems  []imageProblemOut `json:"problems"`
}

type imageProblemOut struct {
	File  string `json:"file"`
	Error string `json:"error"`
}

// runImageList is "netdeploy image list": the catalogue of imagesDir as a
// table (or JSON), then its problems.
func runImageList(imagesDir string, asJSON bool, out io.Writer) error {
	list, problems, err := (&imaging.Catalog{Dir: imagesDir}).Scan()
	if err != nil {
		return err
	}
	if asJSON {
		doc := imageListJSON{ImagesDir: imagesDir, Images: list, Problems: []imageProblemOut{}}
		if doc.Images == nil {
			doc.Images = []imaging.Image{}
		}
		for _, p := range problems {
			doc.Problems = append(doc.Problems, imageProblemOut{File: p.File, Error: p.Err.Error()})
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	if len(list) == 0 {
		why := ""
		if _, err := os.Stat(imagesDir); errors.Is(err, os.ErrNotExist) {
			why = " (the directory does not exist)"
		}
		fmt.Fprintf(out, "no images in %s%s\n", imagesDir, why)
	} else {
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tARCH\tSIZE\tKIND\tPATH\tSHA256")
		for _, im := range list {
			kind := im.Kind
			switch {
			case im.Kind == imaging.KindWIM:
				kind = fmt.Sprintf("wim #%d", im.Index)
			case im.Compression != "":
				kind += "+" + im.Compression
			}
			sum := im.SHA256
			if len(sum) > 12 {
				sum = sum[:12]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", tableCell(im.Name), tableCell(im.Arch), report.SizeString(im.Size), kind, tableCell(im.File), tableCell(sum))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(problems) > 0 {
		noun := "problems"
		if len(problems) == 1 {
			noun = "problem"
		}
		fmt.Fprintf(out, "\n%d %s:\n", len(problems), noun)
		for _, p := range problems {
			fmt.Fprintf(out, "  %s\n", tableCell(p.Error()))
		}
	}
	return nil
}
