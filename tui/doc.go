// Package tui will hold the technician's console (bubbletea, lipgloss,
// bubbles): screens and components fed by the same event stream that
// "netdeploy serve" prints. The console issue builds it; until then the
// root command says so.
package tui
