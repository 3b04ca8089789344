package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/netdeploy/netdeploy/imaging"
)

// consoles are the machine's active consoles as the agent's /init sees
// them (/sys/class/tty/console/active, e.g. "tty0 ttyS0"): the agent
// writes to every one of them and takes the first answer from any, so a
// technician at the screen or on the serial line can answer.
type consoles struct {
	w     io.Writer
	lines chan string
	quiet func(bool) // turns echo off (true) and on again; nil: no-op
}

// newConsoles reads lines from every reader into one stream.
func newConsoles(ws []io.Writer, rs []io.Reader) *consoles {
	c := &consoles{w: io.MultiWriter(ws...), lines: make(chan string)}
	for _, r := range rs {
		go func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				c.lines <- strings.TrimSpace(sc.Text())
			}
		}()
	}
	return c
}

// ask prints question and returns the first answer that check accepts;
// a refused answer is explained and asked again.
func (c *consoles) ask(ctx context.Context, question string, check func(string) error) (string, error) {
	for {
		fmt.Fprint(c.w, question)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case ans := <-c.lines:
			if check == nil {
				return ans, nil
			}
			if err := check(ans); err != nil {
				fmt.Fprintf(c.w, "  %v\r\n", err)
				continue
			}
			return ans, nil
		}
	}
}

// askSecret asks with echo off.
func (c *consoles) askSecret(ctx context.Context, question string) (string, error) {
	if c.quiet != nil {
		c.quiet(true)
		defer c.quiet(false)
	}
	ans, err := c.ask(ctx, question, nil)
	fmt.Fprint(c.w, "\r\n")
	return ans, err
}

// choice is one image offered at the console.
type choice struct {
	Name, Description string
	Size              int64
}

// choose lists the images and returns the index the technician picks.
func (c *consoles) choose(ctx context.Context, list []choice) (int, error) {
	if len(list) == 0 {
		return 0, errors.New("agent: the server offers no image")
	}
	fmt.Fprint(c.w, "\r\nnetdeploy: no image is assigned to this machine. Images on the server:\r\n")
	for i, im := range list {
		fmt.Fprintf(c.w, "  %2d  %-24s %10s  %s\r\n", i+1, printable(im.Name), imaging.SizeString(im.Size), printable(im.Description))
	}
	ans, err := c.ask(ctx, fmt.Sprintf("Deploy which image (1-%d)? ", len(list)), func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > len(list) {
			return fmt.Errorf("type a number from 1 to %d", len(list))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	n, _ := strconv.Atoi(ans)
	return n - 1, nil
}

// printable drops control characters from text that came from the
// network before it reaches a terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, s)
}

// activeConsoles opens the devices named in the kernel's active console
// list; with none, the process's own stdin and stderr.
func activeConsoles() *consoles {
	var ws []io.Writer
	var rs []io.Reader
	var files []*os.File
	b, _ := os.ReadFile("/sys/class/tty/console/active")
	for _, name := range strings.Fields(string(b)) {
		f, err := os.OpenFile("/dev/"+name, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		ws, rs, files = append(ws, f), append(rs, f), append(files, f)
	}
	if len(files) == 0 {
		return newConsoles([]io.Writer{os.Stderr}, []io.Reader{os.Stdin})
	}
	c := newConsoles(ws, rs)
	c.quiet = func(off bool) {
		for _, f := range files {
			setEcho(f, !off)
		}
	}
	return c
}
