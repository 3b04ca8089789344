package tui

import (
	"github.com/charmbracelet/lipgloss"
)

// Styles is the console's one style sheet.
type Styles struct {
	Title      lipgloss.Style
	Header     lipgloss.Style
	Label      lipgloss.Style
	Value      lipgloss.Style
	Good       lipgloss.Style
	Warn       lipgloss.Style
	Bad        lipgloss.Style
	Muted      lipgloss.Style
	Tab        lipgloss.Style
	TabActive  lipgloss.Style
	ColHeader  lipgloss.Style
	Selected   lipgloss.Style
	StageDone  lipgloss.Style
	StageNow   lipgloss.Style
	StageTodo  lipgloss.Style
	StageFail  lipgloss.Style
	Pending    lipgloss.Style
	Failed     lipgloss.Style
	Notice     lipgloss.Style
	Error      lipgloss.Style
	Input      lipgloss.Style
	Box        lipgloss.Style
	LevelDebug lipgloss.Style
	LevelInfo  lipgloss.Style
	LevelWarn  lipgloss.Style
	LevelError lipgloss.Style

	// Progress bar colours (for bubbles/progress).
	BarFull, BarEmpty string
}

// NewStyles builds the style sheet on renderer r (nil: the default
// renderer, which detects the terminal).
func NewStyles(r *lipgloss.Renderer) Styles {
	if r == nil {
		r = lipgloss.DefaultRenderer()
	}
	n := r.NewStyle
	green := lipgloss.AdaptiveColor{Light: "#1a7f37", Dark: "#3fb950"}
	yellow := lipgloss.AdaptiveColor{Light: "#9a6700", Dark: "#d29922"}
	red := lipgloss.AdaptiveColor{Light: "#cf222e", Dark: "#f85149"}
	blue := lipgloss.AdaptiveColor{Light: "#0969da", Dark: "#58a6ff"}
	grey := lipgloss.AdaptiveColor{Light: "#6e7781", Dark: "#8b949e"}
	return Styles{
		Title:      n().Bold(true).Foreground(blue),
		Header:     n().Padding(0, 1),
		Label:      n().Foreground(grey),
		Value:      n().Bold(true),
		Good:       n().Foreground(green).Bold(true),
		Warn:       n().Foreground(yellow).Bold(true),
		Bad:        n().Foreground(red).Bold(true),
		Muted:      n().Foreground(grey),
		Tab:        n().Padding(0, 1).Foreground(grey),
		TabActive:  n().Padding(0, 1).Bold(true).Underline(true).Foreground(blue),
		ColHeader:  n().Bold(true).Foreground(grey),
		Selected:   n().Reverse(true),
		StageDone:  n().Foreground(green),
		StageNow:   n().Foreground(yellow).Bold(true),
		StageTodo:  n().Foreground(grey).Faint(true),
		StageFail:  n().Foreground(red).Bold(true),
		Pending:    n().Foreground(yellow).Bold(true),
		Failed:     n().Foreground(red).Bold(true),
		Notice:     n().Foreground(green),
		Error:      n().Foreground(red),
		Input:      n().Border(lipgloss.NormalBorder()).BorderForeground(blue).Padding(0, 1),
		Box:        n().Border(lipgloss.RoundedBorder()).BorderForeground(grey).Padding(0, 1),
		LevelDebug: n().Foreground(grey),
		LevelInfo:  n().Foreground(blue),
		LevelWarn:  n().Foreground(yellow),
		LevelError: n().Foreground(red).Bold(true),
		BarFull:    "#3fb950",
		BarEmpty:   "#30363d",
	}
}
