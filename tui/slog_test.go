package tui

import "log/slog"

func slogNew(h slog.Handler) *slog.Logger { return slog.New(h) }
