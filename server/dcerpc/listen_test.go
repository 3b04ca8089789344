package dcerpc

import (
	"context"
	"testing"
	"time"
)

func TestListenAndServe(t *testing.T) {
	s := &Server{}
	errc := make(chan error, 1)
	go func() { errc <- s.ListenAndServe("127.0.0.1:0") }()
	time.Sleep(50 * time.Millisecond)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Errorf("ListenAndServe after Shutdown: %v", err)
	}
	if err := (&Server{}).ListenAndServe("256.0.0.1:1"); err == nil {
		t.Error("ListenAndServe on a bad address succeeded")
	}
}
