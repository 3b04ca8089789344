package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	msdcerpc "github.com/oiweiwei/go-msrpc/dcerpc"
	msepm "github.com/oiweiwei/go-msrpc/msrpc/epm/epm/v3"
	wdsv1 "github.com/oiweiwei/go-msrpc/msrpc/wdsc/wdsrpcinterface/v1"
	"github.com/oiweiwei/go-msrpc/ssp"
	"github.com/oiweiwei/go-msrpc/ssp/credential"
	"github.com/oiweiwei/go-msrpc/ssp/gssapi"

	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/tracker"
	"github.com/netdeploy/netdeploy/server/wds"
)

// rpcClientEnv asks the test binary, re-run inside a client namespace, to
// act as the go-msrpc client: SERVER|MECH|USER|PASSWORD.
const rpcClientEnv = "NETDEPLOY_TEST_RPC_CLIENT"

// rpcResult is what the client process reports.
type rpcResult struct {
	Err    string            `json:"err,omitempty"`
	Code   uint32            `json:"code"`
	Images []map[string]any  `json:"images"`
	Vars   map[string]string `json:"vars"`
}

// TestRPCClientProcess is the client half of TestRPCGoClient: it resolves
// the WDS interface through the endpoint mapper on 135, binds with the
// given mechanism at packet privacy (or none) and enumerates the images.
func TestRPCClientProcess(t *testing.T) {
	spec := os.Getenv(rpcClientEnv)
	if spec == "" {
		t.Skip("only run as TestRPCGoClient's client process")
	}
	parts := strings.SplitN(spec, "|", 4)
	server, mech, user, password := parts[0], parts[1], parts[2], parts[3]
	res := rpcResult{Vars: map[string]string{}}
	defer func() { json.NewEncoder(os.Stdout).Encode(res) }()
	ctx, cancel := context.WithTimeout(gssapi.NewSecurityContext(context.Background()), 30*time.Second)
	defer cancel()
	cc, err := msdcerpc.Dial(ctx, server, msepm.EndpointMapper(ctx, server, msdcerpc.WithInsecure()))
	if err != nil {
		res.Err = "dial: " + err.Error()
		return
	}
	defer cc.Close(ctx)
	opts := []msdcerpc.Option{msdcerpc.WithEndpoint("ncacn_ip_tcp:")}
	switch mech {
	case "none":
		opts = append(opts, msdcerpc.WithInsecure())
	case "ntlm":
		opts = append(opts, msdcerpc.WithCredentials(credential.NewFromPassword(user, password)), msdcerpc.WithMechanism(ssp.NTLM), msdcerpc.WithSeal())
	case "spnego":
		opts = append(opts, msdcerpc.WithCredentials(credential.NewFromPassword(user, password)), msdcerpc.WithMechanism(ssp.SPNEGO), msdcerpc.WithMechanism(ssp.NTLM), msdcerpc.WithSeal())
	}
	cli, err := wdsv1.NewInterfaceClient(ctx, cc, opts...)
	if err != nil {
		res.Err = "bind: " + err.Error()
		return
	}
	req := wds.NewRequest(wds.OpImgEnumerate, wds.ULongVar("VERSION", 1), wds.ULongVar("CC", 1))
	resp, err := cli.Message(ctx, &wdsv1.MessageRequest{RequestPacketSize: uint32(len(req)), RequestPacket: req})
	if err != nil {
		res.Err = "call: " + err.Error()
		return
	}
	p, err := wds.Decode(resp.ReplyPacket)
	if err != nil {
		res.Err = "reply: " + err.Error()
		return
	}
	res.Code = p.Code
	for _, v := range p.Vars {
		if txt, err := p.Text(v.Name); err == nil {
			res.Vars[v.Name] = txt
		} else if n, err := p.ULong(v.Name); err == nil {
			res.Vars[v.Name] = strconv.FormatUint(uint64(n), 10)
		}
	}
}

// TestRPCGoClient: the real binary serves a store with a two-image WIM and
// a raw image; go-msrpc clients in another namespace find the WDS
// interface through the endpoint mapper and enumerate it over NTLM and
// SPNEGO at packet privacy; a wrong password and an anonymous caller are
// refused and learn no image name.
func TestRPCGoClient(t *testing.T) {
	need(t, "wimcapture", "wimappend")
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	cli := lab.AddHost("cli", "198.18.0.9/24", "02:00:00:00:06:01")
	work := t.TempDir()
	images := filepath.Join(work, "images")
	src := filepath.Join(work, "src")
	writeFile(t, filepath.Join(src, "hello.txt"), []byte("hello"))
	os.MkdirAll(filepath.Join(images, "Lab"), 0o755)
	wim := filepath.Join(images, "Lab", "install.wim")
	for _, args := range [][]string{
		{"wimcapture", src, wim, "Windows Lab Pro", "Pro edition", "--image-property", "WINDOWS/ARCH=9"},
		{"wimappend", src, wim, "Windows Lab Home", "Home edition", "--image-property", "WINDOWS/ARCH=12"},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", args[0], err, out)
		}
	}
	writeFile(t, filepath.Join(images, "disk.img"), make([]byte, 4096))
	writeFile(t, filepath.Join(images, "disk.img.json"), []byte(`{"name":"Linux appliance","description":"raw disk","arch":"amd64"}`))
	cfg := filepath.Join(work, "netdeploy.yaml")
	writeFile(t, cfg, []byte("accounts:\n  - name: tech\n    password: S3cret!\n"))
	nd := serveIn(t, srv, "--config", cfg, "--interface", "eth0", "--data-dir", filepath.Join(work, "data"), "--images-dir", images, "--dhcp-mode", "off")

	pcap := filepath.Join(work, "wds.pcap")
	stop := startCapture(t, srv, pcap)
	client := func(mech, user, password string) rpcResult {
		t.Helper()
		cmd := cli.Command(context.Background(), os.Args[0], "-test.run", "^TestRPCClientProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), rpcClientEnv+"=198.18.0.1|"+mech+"|"+user+"|"+password)
		out, _ := cmd.Output()
		for _, line := range strings.Split(string(out), "\n") {
			var r rpcResult
			if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &r) == nil {
				return r
			}
		}
		t.Fatalf("client %s printed no result: %s", mech, out)
		return rpcResult{}
	}
	for _, mech := range []string{"ntlm", "spnego"} {
		r := client(mech, "tech", "S3cret!")
		if r.Err != "" || r.Code != 0 {
			t.Fatalf("%s: %+v", mech, r)
		}
		t.Logf("%s reply variables: %v", mech, r.Vars)
		// The catalogue lists by file, then index: the WIM's two images,
		// then the raw disk. WDS arch numbers: 9 AMD64, 0x0B ARM64.
		for i, w := range []struct{ name, path, arch string }{
			{"Windows Lab Pro", `Lab\install.wim`, "<ARCH>9</ARCH>"},
			{"Windows Lab Home", `Lab\install.wim`, "<ARCH>11</ARCH>"},
			{"Linux appliance", `disk.img`, "<ARCH>9</ARCH>"},
		} {
			xml := r.Vars[wds.V2ImageVar("Xml", i)]
			if !strings.Contains(xml, "<NAME>"+w.name+"</NAME>") {
				t.Errorf("%s: image %d xml %q, want name %q", mech, i, xml, w.name)
			}
			if !strings.Contains(xml, w.arch) {
				t.Errorf("%s: image %d xml %q, want %s", mech, i, xml, w.arch)
			}
			if got := r.Vars[wds.V2ImageVar("Path", i)]; got != w.path {
				t.Errorf("%s: image %d path %q, want %q", mech, i, got, w.path)
			}
		}
		if idx := r.Vars[wds.V2ImageVar("Index", 1)]; idx != "2" {
			t.Errorf("%s: second WIM image index %q", mech, idx)
		}
	}
	for _, tc := range []struct{ mech, user, password string }{{"ntlm", "tech", "wrong"}, {"spnego", "tech", "wrong"}, {"none", "", ""}} {
		r := client(tc.mech, tc.user, tc.password)
		if r.Err == "" && r.Code == 0 {
			t.Errorf("%s as %q/%q: enumerated: %+v", tc.mech, tc.user, tc.password, r)
		}
		b, _ := json.Marshal(r)
		if strings.Contains(string(b), "Windows Lab") || strings.Contains(string(b), "appliance") {
			t.Errorf("%s refused but leaked image names: %s", tc.mech, b)
		}
	}
	stop()
	// The WDS conversation (bind with NTLMSSP, sealed requests) decodes
	// cleanly.
	checkCapture(t, pcap, "dcerpc.cn_bind_to_uuid == 1a927394-352e-4553-ae3f-7cf4aafca620 || dcerpc.pkt_type == 0", "NTLMSSP", "Endpoint Mapper")
	nd.wait(5*time.Second, "a logon event with the account", func(e tracker.Event) bool {
		return e.Stage == tracker.StageRPC && e.Event == tracker.KindDone && strings.Contains(e.Detail, "logon tech")
	})
	nd.wait(5*time.Second, "a failed logon event", func(e tracker.Event) bool {
		return e.Stage == tracker.StageRPC && e.Event == tracker.KindError && strings.Contains(e.Detail, "logon failed")
	})
	nd.wait(5*time.Second, "an enumeration event", func(e tracker.Event) bool {
		return e.Stage == tracker.StageRPC && strings.Contains(e.Detail, "enumerated 3 images") && e.IP == "198.18.0.9"
	})
	nd.stop()
}

// TestRPCDumpAndCapture: impacket's rpcdump (run with /usr/bin/python3)
// lists the WDS interface at ncacn_ip_tcp:198.18.0.1[5040] from the
// endpoint mapper, and tshark decodes the conversation as DCERPC and EPM
// with no malformed packet.
func TestRPCDumpAndCapture(t *testing.T) {
	const rpcdump = "/usr/share/doc/python3-impacket/examples/rpcdump.py"
	if _, err := os.Stat(rpcdump); err != nil {
		t.Skip("needs impacket (Debian package python3-impacket)")
	}
	need(t, "tshark", "dumpcap")
	lab := netlab.New(t)
	srv := lab.AddHost("srv", "198.18.0.1/24", "")
	cli := lab.AddHost("cli", "198.18.0.9/24", "")
	work := t.TempDir()
	nd := serveIn(t, srv, "--interface", "eth0", "--data-dir", filepath.Join(work, "data"), "--dhcp-mode", "off")
	pcap := filepath.Join(work, "rpc.pcap")
	stop := startCapture(t, srv, pcap)
	out, err := cli.Run(context.Background(), "/usr/bin/python3", rpcdump, "198.18.0.1")
	if err != nil {
		t.Fatalf("rpcdump: %v", err)
	}
	if !strings.Contains(out, "1A927394-352E-4553-AE3F-7CF4AAFCA620 v1.0") || !strings.Contains(out, "ncacn_ip_tcp:198.18.0.1[5040]") {
		t.Fatalf("rpcdump did not list the WDS interface at 5040:\n%s", out)
	}
	stop()
	checkCapture(t, pcap, "epm", "WdsRpcInterface")
	nd.wait(5*time.Second, "an endpoint lookup event", func(e tracker.Event) bool {
		return e.Stage == tracker.StageRPC && e.Port == 135 && strings.Contains(e.Detail, "endpoint lookup")
	})
	nd.stop()
}

// startCapture records TCP 135 and 5040 on host's interface into a pcap
// file with dumpcap; stop ends it.
func startCapture(t *testing.T, host *netlab.Host, pcap string) (stop func()) {
	t.Helper()
	dump := host.Command(context.Background(), "dumpcap", "-i", host.Iface, "-q", "-w", pcap, "-f", "tcp port 135 or tcp port 5040")
	var dumpErr netlab.Buffer
	dump.Stderr = &dumpErr
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "dumpcap capturing", func() bool { return strings.Contains(dumpErr.String(), "Capturing on") })
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			time.Sleep(300 * time.Millisecond)
			dump.Process.Signal(os.Interrupt)
			dump.Wait()
		}
	}
	t.Cleanup(stop)
	return stop
}

// checkCapture has tshark decode pcap (5040 as DCE/RPC): packets matching
// filter must be there, the detail must mention each of want, and no
// packet may be malformed or carry an expert warning.
func checkCapture(t *testing.T, pcap, filter string, want ...string) {
	t.Helper()
	decode := []string{"-r", pcap, "-d", "tcp.port==5040,dcerpc"}
	n, err := exec.Command("tshark", append(decode, "-Y", filter, "-T", "fields", "-e", "frame.number")...).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	if len(strings.Fields(string(n))) < 2 {
		t.Errorf("tshark found %d packets matching %q", len(strings.Fields(string(n))), filter)
	}
	detail, _ := exec.Command("tshark", append(decode, "-V")...).Output()
	for _, w := range want {
		if !strings.Contains(string(detail), w) {
			t.Errorf("tshark's decode lacks %q", w)
		}
	}
	bad, _ := exec.Command("tshark", append(decode, "-Y", "_ws.malformed || _ws.expert.severity >= warning")...).Output()
	if strings.TrimSpace(string(bad)) != "" {
		t.Errorf("tshark flags packets:\n%s", bad)
	}
}
