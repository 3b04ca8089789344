package tracker

import (
	"fmt"
	"testing"
	"time"
)

func TestTrackerRecordsAndFillsMAC(t *testing.T) {
	tr := New()
	sub := tr.Subscribe()
	defer sub.Close()
	tr.Emit(Event{MAC: "52:54:00:00:00:01", IP: "198.18.0.100", Stage: StageDHCP, Event: KindDone, Port: 67, Arch: "bios"})
	tr.Emit(Event{IP: "198.18.0.100", Stage: StageTFTP, Event: KindStart, Port: 69, File: "undionly.kpxe", Total: 1000})
	tr.Emit(Event{IP: "198.18.0.100", Stage: StageTFTP, Event: KindProgress, Port: 69, Bytes: 500, Total: 1000})
	tr.Emit(Event{Stage: StageDHCP, Event: KindListening, Port: 67}) // service event: no record

	c, ok := tr.Client("52:54:00:00:00:01")
	if !ok {
		t.Fatal("client not recorded")
	}
	if c.Stage != StageTFTP || c.Bytes != 500 || c.Total != 1000 || c.File != "undionly.kpxe" || c.Arch != "bios" || c.IP != "198.18.0.100" {
		t.Errorf("record %+v", c)
	}
	if len(c.History) != 2 { // progress is not history
		t.Errorf("history %+v", c.History)
	}
	if len(tr.Clients()) != 1 {
		t.Errorf("clients %d", len(tr.Clients()))
	}
	evs := sub.Next()
	if len(evs) != 4 || evs[1].MAC != "52:54:00:00:00:01" {
		t.Fatalf("subscriber got %+v", evs)
	}
	for _, e := range evs {
		if e.Time.IsZero() {
			t.Error("event without time")
		}
	}
	// An address nobody leased gets a record of its own.
	tr.Emit(Event{IP: "198.18.0.7", Stage: StageHTTP, Event: KindDone})
	if len(tr.Clients()) != 2 {
		t.Errorf("ip-only client not recorded")
	}
}

func TestSlowSubscriberNeverBlocks(t *testing.T) {
	tr := New()
	tr.queue = 10
	slow := tr.Subscribe()
	done := make(chan struct{})
	go func() {
		for i := 0; i < 1000; i++ {
			tr.Emit(Event{MAC: "m", Stage: StageTFTP, Event: KindProgress, Bytes: int64(i)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Emit blocked on a subscriber that never reads")
	}
	evs := slow.Next()
	if len(evs) != 11 || evs[10].Event != KindDropped || evs[10].Bytes != 990 {
		t.Fatalf("got %d events, last %+v", len(evs), evs[len(evs)-1])
	}
	slow.Close()
	tr.Emit(Event{MAC: "m", Stage: StageTFTP, Event: KindDone})
	if n := len(slow.Next()); n != 0 {
		t.Errorf("closed subscription got %d events", n)
	}
}

func TestBoundedRecords(t *testing.T) {
	tr := New()
	tr.maxClients, tr.history = 16, 4
	for i := 0; i < 100; i++ {
		mac := fmt.Sprintf("02:00:00:00:00:%02x", i)
		for j := 0; j < 10; j++ {
			tr.Emit(Event{MAC: mac, IP: fmt.Sprintf("198.18.0.%d", i), Stage: StageDHCP, Event: KindStart})
		}
	}
	cl := tr.Clients()
	if len(cl) > 16 {
		t.Errorf("%d records kept, cap 16", len(cl))
	}
	if cl[len(cl)-1].MAC != "02:00:00:00:00:63" {
		t.Errorf("newest client evicted: %+v", cl[len(cl)-1])
	}
	for _, c := range cl {
		if len(c.History) > 4 {
			t.Errorf("history of %d steps, cap 4", len(c.History))
		}
	}
	if len(tr.byIP) > 16 {
		t.Errorf("ip index holds %d entries after eviction", len(tr.byIP))
	}
}

func TestServiceEventsMakeNoClient(t *testing.T) {
	tr := New()
	tr.Emit(Event{Stage: StageTFTP, Event: KindListening, IP: "198.18.0.1", Port: 69})
	tr.Emit(Event{Stage: StageDHCP, Event: KindUnauthorized, IP: "198.18.0.9", Detail: "other server"})
	if n := tr.Len(); n != 0 {
		t.Fatalf("%d client records from service events: %+v", n, tr.Clients())
	}
	tr.Emit(Event{Stage: StageHTTP, Event: KindDone, IP: "198.18.0.7", File: "boot.ipxe"})
	if n := tr.Len(); n != 1 {
		t.Fatalf("client event: %d records", n)
	}
}

// TestAddressOnlyRecordMerges: events known by address only join the MAC's
// record once an event names both.
func TestAddressOnlyRecordMerges(t *testing.T) {
	tr := New()
	tr.Emit(Event{Stage: StageTFTP, Event: KindDone, IP: "198.18.0.7", File: "undionly.kpxe"})
	tr.Emit(Event{Stage: StageHTTP, Event: KindDone, IP: "198.18.0.7", MAC: "02:00:00:00:00:07", File: "boot.ipxe"})
	cs := tr.Clients()
	if len(cs) != 1 || cs[0].MAC != "02:00:00:00:00:07" || len(cs[0].History) != 2 || cs[0].History[0].File != "undionly.kpxe" {
		t.Fatalf("clients = %+v", cs)
	}
}

func TestLogLinesKeepTheStage(t *testing.T) {
	tr := New()
	mac := "02:00:00:00:00:09"
	tr.Emit(Event{MAC: mac, Stage: StageApply, Event: KindProgress, Bytes: 10, Total: 100})
	tr.Emit(Event{MAC: mac, Stage: StageRPC, Event: KindLog, Detail: "agent: writing"})
	c, _ := tr.Client(mac)
	if c.Stage != StageApply || c.Bytes != 10 || len(c.History) != 1 || c.History[0].Detail != "agent: writing" {
		t.Fatalf("after a log line: %+v", c)
	}
}

func TestRecorder(t *testing.T) {
	var r Recorder
	r.Emit(Event{MAC: "a"})
	got := r.All()
	r.Emit(Event{MAC: "b"})
	if len(got) != 1 || got[0].MAC != "a" || len(r.All()) != 2 {
		t.Fatalf("recorder %v then %v", got, r.All())
	}
}
