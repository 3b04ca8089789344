package demo

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	smb2 "github.com/hirochachacha/go-smb2"
	msdcerpc "github.com/oiweiwei/go-msrpc/dcerpc"
	msepm "github.com/oiweiwei/go-msrpc/msrpc/epm/epm/v3"
	wdsv1 "github.com/oiweiwei/go-msrpc/msrpc/wdsc/wdsrpcinterface/v1"
	"github.com/oiweiwei/go-msrpc/ssp"
	"github.com/oiweiwei/go-msrpc/ssp/credential"
	"github.com/oiweiwei/go-msrpc/ssp/gssapi"

	"github.com/netdeploy/netdeploy/server/wds"
)

// agent plays the imaging agent's RPC steps ([MS-WDSOSD] 3.2.5 client
// sequence): find the WDS interface through the endpoint mapper, log on
// with NTLM at packet privacy, LOG_INIT, a LOG_MSG, IMG_ENUMERATE, and a
// LOG_MSG saying what it found.
func (c *Client) agent(ctx context.Context, log *slog.Logger) error {
	if c.bootServer == nil {
		return fmt.Errorf("demo: agent: no server learned from the boot")
	}
	ctx, cancel := context.WithTimeout(gssapi.NewSecurityContext(ctx), 30*time.Second)
	defer cancel()
	server := c.bootServer.String()
	d := &net.Dialer{Timeout: 5 * time.Second}
	if c.bootLocal != nil {
		d.LocalAddr = &net.TCPAddr{IP: c.bootLocal}
	}
	epmPort := c.EPMPort
	if epmPort == 0 {
		epmPort = 135
	}
	start := time.Now()
	cc, err := msdcerpc.Dial(ctx, server, msepm.EndpointMapper(ctx, net.JoinHostPort(server, strconv.Itoa(epmPort)), msdcerpc.WithInsecure(), msdcerpc.WithDialer(d)), msdcerpc.WithDialer(d))
	if err != nil {
		return fmt.Errorf("demo: agent: dial %s: %w", server, err)
	}
	defer cc.Close(ctx)
	cli, err := wdsv1.NewInterfaceClient(ctx, cc, msdcerpc.WithEndpoint("ncacn_ip_tcp:"),
		msdcerpc.WithCredentials(credential.NewFromPassword(c.Account, c.Password)), msdcerpc.WithMechanism(ssp.NTLM), msdcerpc.WithSeal())
	if err != nil {
		return fmt.Errorf("demo: agent: bind: %w", err)
	}
	mac := c.bootMAC.String()
	call := func(op uint32, vars ...wds.Var) (*wds.Packet, error) {
		req := wds.NewRequest(op, vars...)
		resp, err := cli.Message(ctx, &wdsv1.MessageRequest{RequestPacketSize: uint32(len(req)), RequestPacket: req})
		if err != nil {
			return nil, err
		}
		return wds.ParseReply(resp.ReplyPacket)
	}
	logMsg := func(typ uint32, text string) error {
		_, err := call(wds.OpLogMsg, wds.ULongVar("MESSAGE_TYPE", typ), wds.WStringVar("CLIENT_MAC", mac), wds.WStringVar("MESSAGE", text))
		return err
	}
	if _, err := call(wds.OpLogInit, wds.ULongVar("VERSION", 1)); err != nil {
		return fmt.Errorf("demo: agent: log init: %w", err)
	}
	if err := logMsg(wds.MsgClientStarted, "demo agent started; logged on as "+c.Account); err != nil {
		return fmt.Errorf("demo: agent: log: %w", err)
	}
	reply, err := call(wds.OpImgEnumerate, wds.ULongVar("VERSION", 1), wds.ULongVar("CC", 1))
	if err != nil {
		return fmt.Errorf("demo: agent: enumerate: %w", err)
	}
	n := 0
	for ; reply.Has(wds.V2ImageVar("Xml", n)); n++ {
	}
	log.Info("agent enumerated images", "images", n, "ms", time.Since(start).Milliseconds())
	if err := logMsg(wds.MsgClientGenericMessage, fmt.Sprintf("the server offers %d images", n)); err != nil {
		return fmt.Errorf("demo: agent: log: %w", err)
	}
	if n == 0 {
		return nil
	}
	// Step 6: the image over SMB, paced like the downloads before.
	path, err := reply.Text(wds.V2ImageVar("Path", 0))
	if err != nil {
		return fmt.Errorf("demo: agent: image path: %w", err)
	}
	got, err := c.readImage(ctx, d, server, path)
	if err != nil {
		logMsg(wds.MsgClientError, "reading "+path+" failed: "+err.Error())
		return err
	}
	log.Info("agent read its image over SMB", "file", path, "bytes", got)
	if err := logMsg(wds.MsgClientFinished, fmt.Sprintf("read %s over SMB: %d bytes", path, got)); err != nil {
		return fmt.Errorf("demo: agent: log: %w", err)
	}
	return nil
}

// readImage reads path from the server's images share with go-smb2 (the
// client the imaging agent uses), NTLM in SPNEGO, at the client's rate.
func (c *Client) readImage(ctx context.Context, d *net.Dialer, server, path string) (int64, error) {
	port := c.SMBPort
	if port == 0 {
		port = 445
	}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(server, strconv.Itoa(port)))
	if err != nil {
		return 0, fmt.Errorf("demo: agent: smb dial: %w", err)
	}
	defer conn.Close()
	sd := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: c.Account, Password: c.Password}}
	sess, err := sd.DialContext(ctx, conn)
	if err != nil {
		return 0, fmt.Errorf("demo: agent: smb logon: %w", err)
	}
	defer sess.Logoff()
	share, err := sess.Mount(`\\` + server + `\images`)
	if err != nil {
		return 0, fmt.Errorf("demo: agent: smb tree connect: %w", err)
	}
	defer share.Umount()
	f, err := share.Open(path)
	if err != nil {
		return 0, fmt.Errorf("demo: agent: smb open %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("demo: agent: smb stat %s: %w", path, err)
	}
	got, err := copyPaced(ctx, f, newPacer(c.Rate), nil)
	if err != nil {
		return got, fmt.Errorf("demo: agent: smb read %s: %w", path, err)
	}
	if got != st.Size() {
		return got, fmt.Errorf("demo: agent: smb read %s: %d of %d bytes", path, got, st.Size())
	}
	return got, nil
}
