package tui

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/udprange"
)

// t0 is the scripted stream's start.
var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// fakeBackend replays a scripted event stream and records what the
// console asked of it.
type fakeBackend struct {
	mu     sync.Mutex
	snap   Snapshot
	events []tracker.Event
	logs   []LogLine
	calls  []string
	fail   error
}

func (f *fakeBackend) Snapshot() Snapshot {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.snap
	s.Ports = append([]PortState(nil), f.snap.Ports...)
	s.Sessions = append([]Session(nil), f.snap.Sessions...)
	s.Pending = append([]Pending(nil), f.snap.Pending...)
	return s
}

func (f *fakeBackend) Events() []tracker.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.events
	f.events = nil
	return out
}

func (f *fakeBackend) Logs() []LogLine {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.logs
	f.logs = nil
	return out
}

func (f *fakeBackend) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return f.fail
}

func (f *fakeBackend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeBackend) SetAuthorization(on bool) error {
	if err := f.record("authorization " + map[bool]string{true: "on", false: "off"}[on]); err != nil {
		return err
	}
	f.mu.Lock()
	f.snap.Authorization = on
	f.mu.Unlock()
	return nil
}

func (f *fakeBackend) SetDHCPMode(mode string) error {
	if err := f.record("mode " + mode); err != nil {
		return err
	}
	f.mu.Lock()
	f.snap.DHCPMode = mode
	f.mu.Unlock()
	return nil
}

func (f *fakeBackend) SetUDPRange(r udprange.Range) error {
	if err := f.record("range " + r.String()); err != nil {
		return err
	}
	f.mu.Lock()
	f.snap.UDPRange = r.String()
	f.mu.Unlock()
	return nil
}

func (f *fakeBackend) SetPolicy(p string) error {
	if err := f.record("policy " + p); err != nil {
		return err
	}
	f.mu.Lock()
	f.snap.Policy = p
	f.mu.Unlock()
	return nil
}

func (f *fakeBackend) Approve(mac string) error { return f.record("approve " + mac) }
func (f *fakeBackend) Deny(mac string) error    { return f.record("deny " + mac) }

func (f *fakeBackend) StartMulticast() (int, error) { return 1, f.record("multicast start") }

func (f *fakeBackend) Save() (string, error) {
	if err := f.record("save"); err != nil {
		return "", err
	}
	return f.snap.ConfigFile, nil
}

var errRefused = errors.New("refused by the fake")

// scripted returns a backend holding six clients in every state the
// console distinguishes, the service ports, two sessions and some logs.
func scripted() *fakeBackend {
	const (
		a = "52:54:00:00:00:0a" // BIOS, downloading the kernel over HTTP
		b = "52:54:00:00:00:0b" // UEFI, in TFTP
		c = "52:54:00:00:00:0c" // waiting for approval
		d = "52:54:00:00:00:0d" // failed
		e = "52:54:00:00:00:0e" // deployed
	)
	ev := []tracker.Event{
		{Time: at(0), Stage: tracker.StageDHCP, Event: tracker.KindListening, IP: "198.18.0.1", Port: 67, Proto: "udp"},
		{Time: at(100), MAC: a, Stage: tracker.StageDHCP, Event: tracker.KindStart, Port: 67, Arch: "bios", Detail: "discover"},
		{Time: at(150), MAC: a, IP: "198.18.0.100", Stage: tracker.StageDHCP, Event: tracker.KindDone, Port: 67, Arch: "bios", File: "undionly.kpxe", Detail: "ack"},
		{Time: at(300), MAC: a, IP: "198.18.0.100", Stage: tracker.StageTFTP, Event: tracker.KindStart, Port: 69, LocalPort: 64001, File: "undionly.kpxe", Total: 70 << 10},
		{Time: at(500), MAC: a, IP: "198.18.0.100", Stage: tracker.StageTFTP, Event: tracker.KindDone, Port: 69, LocalPort: 64001, File: "undionly.kpxe", Bytes: 70 << 10, Total: 70 << 10},
		{Time: at(900), MAC: a, IP: "198.18.0.100", Stage: tracker.StageHTTP, Event: tracker.KindDone, Port: 80, File: "boot.ipxe", Bytes: 300},
		{Time: at(1000), MAC: a, IP: "198.18.0.100", Stage: tracker.StageHTTP, Event: tracker.KindStart, Port: 80, File: "netdeploy/kernel", Total: 48 << 20},
		{Time: at(2000), MAC: a, IP: "198.18.0.100", Stage: tracker.StageHTTP, Event: tracker.KindProgress, Port: 80, File: "netdeploy/kernel", Bytes: 8 << 20, Total: 48 << 20},
		{Time: at(3000), MAC: a, IP: "198.18.0.100", Stage: tracker.StageHTTP, Event: tracker.KindProgress, Port: 80, File: "netdeploy/kernel", Bytes: 16 << 20, Total: 48 << 20},
		{Time: at(3100), MAC: a, IP: "198.18.0.100", Stage: tracker.StageRPC, Event: tracker.KindLog, Port: 5040, Detail: "agent: found disk /dev/vda (32 GiB)"},

		{Time: at(200), MAC: b, Stage: tracker.StageDHCP, Event: tracker.KindStart, Port: 67, Arch: "efi64", Detail: "discover"},
		{Time: at(260), MAC: b, IP: "198.18.0.101", Stage: tracker.StageDHCP, Event: tracker.KindDone, Port: 67, Arch: "efi64", Detail: "ack"},
		{Time: at(400), MAC: b, IP: "198.18.0.101", Stage: tracker.StagePXE, Event: tracker.KindDone, Port: 4011, File: "ipxe.efi"},
		{Time: at(600), MAC: b, IP: "198.18.0.101", Stage: tracker.StageTFTP, Event: tracker.KindStart, Port: 69, LocalPort: 64002, Peer: "198.18.0.101:1024", File: "ipxe.efi", Total: 1 << 20},
		{Time: at(2600), MAC: b, IP: "198.18.0.101", Stage: tracker.StageTFTP, Event: tracker.KindProgress, Port: 69, LocalPort: 64002, File: "ipxe.efi", Bytes: 700 << 10, Total: 1 << 20},

		{Time: at(700), MAC: c, Stage: tracker.StageDHCP, Event: tracker.KindStart, Port: 67, Arch: "efi64", Detail: "discover"},
		{Time: at(710), MAC: c, Stage: tracker.StagePXE, Event: tracker.KindPending, Detail: "waiting for approval"},

		{Time: at(800), MAC: d, IP: "198.18.0.103", Stage: tracker.StageDHCP, Event: tracker.KindDone, Port: 67, Arch: "bios", Detail: "ack"},
		{Time: at(1200), MAC: d, IP: "198.18.0.103", Stage: tracker.StageTFTP, Event: tracker.KindError, Port: 69, File: "undionly.kpxe", Detail: "timeout after 5 retries"},
		{Time: at(1300), MAC: d, IP: "198.18.0.103", Stage: tracker.StageFailed, Event: tracker.KindError, Detail: "checksum mismatch"},

		{Time: at(50), MAC: e, IP: "198.18.0.104", Stage: tracker.StageDHCP, Event: tracker.KindDone, Port: 67, Arch: "efi64", Detail: "ack"},
		{Time: at(90), MAC: e, IP: "198.18.0.104", Stage: tracker.StageTFTP, Event: tracker.KindDone, Port: 69, File: "ipxe.efi", Bytes: 1 << 20, Total: 1 << 20},
		{Time: at(95), MAC: e, IP: "198.18.0.104", Stage: tracker.StageHTTP, Event: tracker.KindDone, Port: 80, File: "netdeploy/initrd", Bytes: 20 << 20},
		{Time: at(2900), MAC: e, IP: "198.18.0.104", Stage: tracker.StageDone, Event: tracker.KindDone, Detail: "image verified"},

		{Time: at(3200), IP: "198.18.0.77", Stage: tracker.StageHTTP, Event: tracker.KindDone, Port: 80, File: "boot.ipxe", Bytes: 310},
	}
	ports := []PortState{
		{Service: "dhcp", Proto: "udp", Port: "67", State: PortListening, PacketsIn: 42, PacketsOut: 40, BytesIn: 12600, BytesOut: 13000},
		{Service: "auth", Proto: "udp", Port: "68", State: PortListening, PacketsIn: 3, PacketsOut: 3, BytesIn: 900, BytesOut: 900},
		{Service: "pxe", Proto: "udp", Port: "4011", State: PortListening, PacketsIn: 2, PacketsOut: 2, BytesIn: 600, BytesOut: 620},
		{Service: "tftp", Proto: "udp", Port: "69", State: PortListening, PacketsIn: 9, PacketsOut: 0, BytesIn: 540},
		{Service: "tftp", Proto: "udp", Port: "64001-65000", State: PortListening, PacketsIn: 1500, PacketsOut: 1520, BytesIn: 6000, BytesOut: 2 << 20, Active: 1},
		{Service: "http", Proto: "tcp", Port: "80", State: PortListening, PacketsIn: 6, PacketsOut: 6, BytesOut: 37 << 20, Active: 1},
		{Service: "epmap", Proto: "tcp", Port: "135", State: PortMissing, Reason: "RPC stage not built yet"},
		{Service: "wds-rpc", Proto: "tcp", Port: "5040", State: PortMissing, Reason: "RPC stage not built yet"},
		{Service: "netbios", Proto: "tcp", Port: "137-139", State: PortMissing, Reason: "SMB stage not built yet"},
		{Service: "smb", Proto: "tcp", Port: "445", State: PortError, Reason: "address already in use"},
	}
	return &fakeBackend{
		snap: Snapshot{
			At: at(4000), Started: t0.Add(-65 * time.Second),
			Interface: "eth1", ServerIP: "198.18.0.1", DHCPMode: "authoritative",
			Authorization: true, Authorized: true, UDPRange: "64001-65000", Policy: "approve",
			Images: "3 images, 5.2G", ConfigFile: "/etc/netdeploy.yaml",
			Ports: ports,
			Sessions: []Session{
				{Proto: "tftp", Client: "198.18.0.101:1024", LocalPort: 64002, File: "ipxe.efi", Bytes: 700 << 10, Total: 1 << 20, Started: at(600)},
				{Proto: "http", Client: "198.18.0.100:40112", LocalPort: 80, File: "netdeploy/kernel", Bytes: 16 << 20, Total: 48 << 20, Started: at(1000)},
			},
			Pending: []Pending{{MAC: c, Since: at(710)}},
		},
		events: ev,
		logs: []LogLine{
			{Time: at(0), Level: slog.LevelInfo, Msg: "netdeploy serving", Attrs: "interface=eth1 ip=198.18.0.1"},
			{Time: at(100), Level: slog.LevelDebug, Msg: "dhcp: reply", Attrs: "mac=" + a + " port=67", MAC: a},
			{Time: at(710), Level: slog.LevelInfo, Msg: "client waits for approval", Attrs: "mac=" + c, MAC: c},
			{Time: at(1200), Level: slog.LevelWarn, Msg: "tftp: session timed out", Attrs: "mac=" + d + " port=64003", MAC: d},
			{Time: at(1300), Level: slog.LevelError, Msg: "deployment failed", Attrs: "mac=" + d + ` reason="checksum mismatch"`, MAC: d},
		},
	}
}
