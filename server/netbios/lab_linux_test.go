//go:build linux

package netbios

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netdeploy/netdeploy/server/netlab"
	"github.com/netdeploy/netdeploy/server/stats"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// These tests run Samba's nmblookup against the server in network
// namespaces (198.18.0.0/24 only). netlab.New skips them unless root.

const labMAC = "02:00:5e:10:00:01"

type labServer struct {
	srv, cli *netlab.Host
	s        *Server
	d        *DatagramServer
	ev       *eventLog
	nmb      string
}

// startLab builds a server host (198.18.0.1, labMAC) and a client host
// (198.18.0.2) and serves the name and datagram services on the server's
// eth0, with sockets from ListenUDP as ListenAndServe opens them.
func startLab(t *testing.T) *labServer {
	t.Helper()
	lab := netlab.New(t)
	nmb, err := exec.LookPath("nmblookup")
	if err != nil {
		t.Skip("needs nmblookup (Debian package samba-common-bin)")
	}
	l := &labServer{ev: &eventLog{}, nmb: nmb}
	l.srv = lab.AddHost("srv", "198.18.0.1/24", labMAC)
	l.cli = lab.AddHost("cli", "198.18.0.2/24", "")
	waitBroadcast(t, l.cli, l.srv, net.IPv4(198, 18, 0, 255))
	l.s = &Server{Name: "NetDeploy", IP: l.srv.IP(), MAC: l.srv.MAC, Interface: "eth0", Events: l.ev, Log: testLog(t)}
	l.d = &DatagramServer{Interface: "eth0", Log: testLog(t)}
	var nameConn, dgmConn *net.UDPConn
	if err := l.srv.Do(func() (err error) {
		if nameConn, err = ListenUDP("eth0", DefaultNamePort); err != nil {
			return err
		}
		dgmConn, err = ListenUDP("eth0", DefaultDatagramPort)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		serve    func() error
		shutdown func(context.Context) error
	}{{func() error { return l.s.Serve(nameConn) }, l.s.Shutdown}, {func() error { return l.d.Serve(dgmConn) }, l.d.Shutdown}} {
		done := make(chan error, 1)
		go func() { done <- x.serve() }()
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := x.shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	return l
}

// waitBroadcast returns once a broadcast from one host reaches the other:
// on a new lab the first frames can be lost while the switch ports come
// up, and nothing retries a broadcast nmblookup or the tests send.
func waitBroadcast(t *testing.T, from, to *netlab.Host, bcastIP net.IP) {
	t.Helper()
	var rx, tx *net.UDPConn
	if err := to.Do(func() (err error) {
		rx, err = net.ListenUDP("udp4", &net.UDPAddr{Port: 9})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	if err := from.Do(func() (err error) {
		tx, err = net.ListenUDP("udp4", &net.UDPAddr{IP: from.IP()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	bcast := &net.UDPAddr{IP: bcastIP, Port: 9}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if _, err := tx.WriteToUDP([]byte("up?"), bcast); err != nil {
			t.Fatal(err)
		}
		rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, _, err := rx.ReadFromUDP(make([]byte, 16)); err == nil {
			return
		}
	}
	t.Fatal("no broadcast got through the lab switch in 10 s")
}

// nmblookup runs nmblookup in the client namespace and returns its
// output; a failed lookup exits 1 and is not an error here.
func (l *labServer) nmblookup(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := l.cli.Command(ctx, l.nmb, append([]string{"--configfile=/dev/null"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil && ctx.Err() != nil {
		t.Fatalf("nmblookup %v: %v: %s", args, err, out)
	}
	t.Logf("nmblookup %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

// TestLabNmblookup: Samba's nmblookup finds the server by unicast and by
// broadcast query, reads its node status, and gets nothing for another
// name; events and counters follow.
func TestLabNmblookup(t *testing.T) {
	l := startLab(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		// Unicast with recursion desired, as to a name server. (In Samba
		// 4.17, -R is --name-resolve; recursion has only a long option.)
		{[]string{"-U", "198.18.0.1", "--recursion", "NETDEPLOY"}, "198.18.0.1 NETDEPLOY<00>"},
		{[]string{"-U", "198.18.0.1", "NETDEPLOY#20"}, "198.18.0.1 NETDEPLOY<20>"},
		// Broadcast; the name as typed comes back in the output.
		{[]string{"-B", "198.18.0.255", "NETDEPLOY"}, "198.18.0.1 NETDEPLOY<00>"},
		{[]string{"-B", "198.18.0.255", "netdeploy"}, "198.18.0.1 netdeploy<00>"},
		{[]string{"-B", "198.18.0.255", "WORKGROUP"}, "198.18.0.1 WORKGROUP<00>"},
		{[]string{"-B", "198.18.0.255", "*"}, "198.18.0.1 *<00>"},
	} {
		out := l.nmblookup(t, c.args...)
		if !hasLine(out, c.want) {
			t.Errorf("nmblookup %v: no line %q in:\n%s", c.args, c.want, out)
		}
	}

	out := l.nmblookup(t, "-A", "198.18.0.1")
	for _, re := range []string{
		`(?m)^\tNETDEPLOY +<00> - +B <ACTIVE> *$`,
		`(?m)^\tNETDEPLOY +<20> - +B <ACTIVE> *$`,
		`(?m)^\tWORKGROUP +<00> - <GROUP> B <ACTIVE> *$`,
		`(?m)^\tMAC Address = 02-00-5E-10-00-01$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("nmblookup -A: no match for %s in:\n%s", re, out)
		}
	}
	if n := strings.Count(out, "<ACTIVE>"); n != 3 {
		t.Errorf("nmblookup -A: %d names, want 3", n)
	}

	answered := len(l.ev.All())
	for _, args := range [][]string{
		{"-U", "198.18.0.1", "OTHER"},
		{"-B", "198.18.0.255", "OTHER"},
		{"-U", "198.18.0.1", "NETDEPLOY#03"},
	} {
		out := l.nmblookup(t, args...)
		if !strings.Contains(out, "name_query failed to find name") || strings.Contains(out, "198.18.0.1 ") {
			t.Errorf("nmblookup %v: answered:\n%s", args, out)
		}
	}
	evs := l.ev.All()
	if len(evs) != answered || answered != 7 {
		t.Fatalf("%d events (%d before the other names), want 7: %+v", len(evs), answered, evs)
	}
	details := map[string]bool{}
	for _, e := range evs {
		if e.Stage != tracker.StageSMB || e.Event != tracker.KindProgress || e.Port != 137 || e.Proto != "udp" || e.IP != "198.18.0.2" {
			t.Errorf("event %+v", e)
		}
		details[e.Detail] = true
	}
	// nmblookup upper-cases names on the wire (it prints them as typed);
	// lower-case names on the wire are matched in TestDecideNameQuery.
	for _, d := range []string{"name query NETDEPLOY<00>", "name query NETDEPLOY<20>",
		"name query WORKGROUP<00>", "name query *<00>", "node status *<00>"} {
		if !details[d] {
			t.Errorf("no event %q in %v", d, details)
		}
	}
	if st := settledStats(l.s, func(st stats.Snapshot) bool { return st.PacketsOut >= 7 }); st.PacketsOut != 7 || st.PacketsIn < 10 {
		t.Errorf("stats %+v", st)
	}
}

// TestLabMalformed: datagrams that are truncated, loop through pointers,
// claim huge counts or are plain garbage, sent from the client to 137 and
// 138, leave both servers answering as before.
func TestLabMalformed(t *testing.T) {
	l := startLab(t)
	loop := []byte("\x00\x01\x00\x10\x00\x01\x00\x00\x00\x00\x00\x00\x02\xc0\x0c\xc0\x0c\x00\x20\x00\x01")
	junk := [][]byte{
		{}, {0}, []byte("garbage"), bcastQuery[:13], bcastQuery[:len(bcastQuery)-2], loop,
		[]byte("\x00\x01\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"),
		append([]byte("\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3f"), make([]byte, 1400)...),
		registration, statusQuery[:30], dgmAnnouncement[:20],
	}
	// A first lookup sets the baseline.
	if out := l.nmblookup(t, "-B", "198.18.0.255", "NETDEPLOY"); !hasLine(out, "198.18.0.1 NETDEPLOY<00>") {
		t.Fatalf("no answer before the junk:\n%s", out)
	}
	base := l.s.Stats()
	for _, port := range []int{DefaultNamePort, DefaultDatagramPort} {
		if err := l.cli.Do(func() error {
			c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: port})
			if err != nil {
				return err
			}
			defer c.Close()
			for _, b := range junk {
				if _, err := c.Write(b); err != nil {
					return err
				}
			}
			// A broadcast too, which the server receives on 0.0.0.0.
			b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 18, 0, 2)})
			if err != nil {
				return err
			}
			defer b.Close()
			_, err = b.WriteToUDP(loop, &net.UDPAddr{IP: net.IPv4(198, 18, 0, 255), Port: port})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	want := uint64(len(junk) + 1)
	deadline := time.Now().Add(10 * time.Second)
	for (l.s.Stats().PacketsIn-base.PacketsIn < want || l.d.Stats().PacketsIn < want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n, d := l.s.Stats(), l.d.Stats(); n.PacketsIn-base.PacketsIn != want || n.PacketsOut != base.PacketsOut || d.PacketsIn != want {
		t.Fatalf("name service %+v (before: %+v), datagram service %+v; want %d more in each, no reply", n, base, d, want)
	}
	if out := l.nmblookup(t, "-B", "198.18.0.255", "NETDEPLOY"); !hasLine(out, "198.18.0.1 NETDEPLOY<00>") {
		t.Fatalf("no answer after the junk:\n%s", out)
	}
	if out := l.nmblookup(t, "-A", "198.18.0.1"); !strings.Contains(out, "MAC Address = 02-00-5E-10-00-01") {
		t.Fatalf("no node status after the junk:\n%s", out)
	}
}

// TestLabInterfaceBinding: the sockets hold the ports on eth0, and a query
// reaching the server on another interface is not answered.
func TestLabInterfaceBinding(t *testing.T) {
	l := startLab(t)
	other := netlab.New(t)
	other.Attach(l.srv, "eth1", "198.19.0.1/24")
	listen := func(iface string, port int) error {
		return l.srv.Do(func() error {
			c, err := ListenUDP(iface, port)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	for _, port := range []int{DefaultNamePort, DefaultDatagramPort} {
		// Another server on eth0, or one on every interface (as nmbd
		// binds), is refused; one on another interface is not.
		for _, iface := range []string{"eth0", ""} {
			if err := listen(iface, port); !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("socket on %q port %d: %v, want EADDRINUSE", iface, port, err)
			}
		}
		if err := listen("eth1", port); err != nil {
			t.Errorf("socket on eth1 port %d: %v", port, err)
		}
	}
	far := other.AddHost("far", "198.19.0.2/24", "")
	waitBroadcast(t, far, l.srv, net.IPv4(198, 19, 0, 255)) // eth1 does receive
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := far.Command(ctx, l.nmb, "--configfile=/dev/null", "-U", "198.19.0.1", "NETDEPLOY").CombinedOutput()
	if !strings.Contains(string(out), "name_query failed") {
		t.Fatalf("answered on eth1:\n%s", out)
	}
	out, _ = far.Command(ctx, l.nmb, "--configfile=/dev/null", "-B", "198.19.0.255", "NETDEPLOY").CombinedOutput()
	if !strings.Contains(string(out), "name_query failed") {
		t.Fatalf("answered a broadcast on eth1:\n%s", out)
	}
	if st := l.s.Stats(); st.PacketsIn != 0 {
		t.Fatalf("eth1 traffic reached the server: %+v", st)
	}
	if out := l.nmblookup(t, "-U", "198.18.0.1", "NETDEPLOY"); !hasLine(out, "198.18.0.1 NETDEPLOY<00>") {
		t.Fatalf("no answer on eth0:\n%s", out)
	}
}

// hasLine reports whether out has line as one of its lines.
func hasLine(out, line string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimRight(l, " \r") == line {
			return true
		}
	}
	return false
}
