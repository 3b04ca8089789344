package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/netdeploy/netdeploy/config"
	"github.com/netdeploy/netdeploy/imaging"
	"github.com/netdeploy/netdeploy/imaging/initramfs"
	"github.com/netdeploy/netdeploy/server/boot"
	"github.com/netdeploy/netdeploy/server/dcerpc"
	"github.com/netdeploy/netdeploy/server/tracker"
)

// bootEntry is the default boot entry: the operator's kernel and initrd,
// or else a kernel (boot.kernel, default the newest in /boot) with the
// imaging agent's initramfs, built for that kernel on first use. When the
// agent entry cannot be made the entry stays empty and problem says why.
func bootEntry(rt *config.Runtime, log *slog.Logger) (e boot.Entry, problem string) {
	e = boot.Entry{Kernel: rt.Boot.Kernel, Initrd: rt.Boot.Initrd, Cmdline: rt.Boot.Cmdline}
	if rt.Boot.Initrd != "" {
		return e, ""
	}
	kernel := rt.Boot.Kernel
	if kernel == "" {
		k, err := initramfs.HostKernel("/boot")
		if err != nil {
			return boot.Entry{}, err.Error()
		}
		kernel = k
	}
	mods, err := initramfs.ModulesFor("/", kernel)
	if err != nil {
		return boot.Entry{}, err.Error()
	}
	agentBin := rt.Boot.Agent
	if agentBin == "" {
		if agentBin, err = os.Executable(); err != nil {
			return boot.Entry{}, fmt.Sprintf("agent binary: %v", err)
		}
	}
	if err := initramfs.CheckStatic(agentBin); err != nil {
		return boot.Entry{}, err.Error() + ", or set boot.agent"
	}
	b := &initrdBuilder{cache: filepath.Join(rt.DataDir, "cache"), opts: initramfs.Options{Agent: agentBin, ModulesDir: mods}, log: log}
	e.Kernel, e.Agent, e.BuildInitrd = kernel, true, b.get
	return e, ""
}

// initrdBuilder builds the agent's initramfs once and rebuilds it when an
// input changes (initramfs.Cached keys the archive by its inputs).
type initrdBuilder struct {
	cache string
	opts  initramfs.Options
	log   *slog.Logger

	mu   sync.Mutex
	last string
}

func (b *initrdBuilder) get() (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, err := initramfs.Cached(b.cache, b.opts)
	if err != nil {
		b.log.Error("agent initramfs not built", "err", err)
		return "", fmt.Errorf("server: agent initramfs: %w", err)
	}
	if p != b.last {
		st, _ := os.Stat(p)
		size := int64(0)
		if st != nil {
			size = st.Size()
		}
		b.log.Info("agent initramfs ready", "path", p, "bytes", size, "modules", b.opts.ModulesDir)
		b.last = p
	}
	return p, nil
}

// agentArgs are the netdeploy.* kernel parameters of mac's agent: where
// the server is, its one-time logon, its image and what to do after.
func (o *Orchestrator) agentArgs(mac string) string {
	args := []string{"netdeploy.server=" + o.RT.ServerIP.String()}
	if mac != "" {
		if c, err := o.Creds.Mint(mac); err == nil {
			args = append(args, "netdeploy.account="+c.Name, "netdeploy.password="+c.Password)
		} else {
			o.log.Warn("no one-time credential", "mac", mac, "err", err)
		}
		if img := o.ImageFor(mac); img != "" && !strings.ContainsAny(img, " \t\"") {
			args = append(args, "netdeploy.image="+img)
			if hint := o.targetHint(img); hint != "" {
				args = append(args, "netdeploy.target="+hint)
			}
		} else if img != "" {
			o.log.Warn("image name has spaces; the client will choose", "mac", mac, "image", img)
		}
	}
	args = append(args, "netdeploy.after="+o.RT.Deploy.After)
	if p := o.RT.RPC.EPMPort; p != 135 {
		args = append(args, fmt.Sprintf("netdeploy.epm_port=%d", p))
	}
	if p := o.RT.SMB.Port; p != 445 {
		args = append(args, fmt.Sprintf("netdeploy.smb_port=%d", p))
	}
	return strings.Join(args, " ")
}

// targetHint is the target-disk hint of the image named img, if the
// catalogue has one without spaces.
func (o *Orchestrator) targetHint(img string) string {
	list, err := o.Catalog.List()
	if err != nil {
		return ""
	}
	im, ok := findImage(list, img)
	if !ok || strings.ContainsAny(im.TargetDisk, " \t\"") {
		return ""
	}
	return im.TargetDisk
}

// findImage finds an image by name, file or share path, without case.
func findImage(list []imaging.Image, name string) (imaging.Image, bool) {
	for _, im := range list {
		if strings.EqualFold(im.Name, name) || strings.EqualFold(im.File, name) || strings.EqualFold(im.Path, name) {
			return im, true
		}
	}
	return imaging.Image{}, false
}

// ImageFor is the image mac is assigned: set through the control API,
// else deploy.assign, else deploy.default_image; "" lets the client
// choose.
func (o *Orchestrator) ImageFor(mac string) string {
	o.assignMu.Lock()
	img, ok := o.assigned[mac]
	o.assignMu.Unlock()
	if ok {
		return img
	}
	if img := o.RT.Deploy.Assign[mac]; img != "" {
		return img
	}
	return o.RT.Deploy.DefaultImage
}

// Assign sets mac's image (implements control.API); "" removes the
// assignment made here. The image must be in the catalogue.
func (o *Orchestrator) Assign(mac, image string) error {
	if image != "" {
		list, err := o.Catalog.List()
		if err != nil {
			return fmt.Errorf("assign: %w", err)
		}
		if _, found := findImage(list, image); !found {
			return fmt.Errorf("assign: no image %q in %s (see netdeploy image list)", image, o.RT.ImagesDir)
		}
	}
	o.assignMu.Lock()
	if image == "" {
		delete(o.assigned, mac)
	} else {
		o.assigned[mac] = image
	}
	o.assignMu.Unlock()
	o.log.Info("image assigned", "mac", mac, "image", image)
	return nil
}

// Assignments are the effective assignments: deploy.assign overlaid with
// the control API's (implements control.API).
func (o *Orchestrator) Assignments() map[string]string {
	out := map[string]string{}
	for mac, img := range o.RT.Deploy.Assign {
		out[mac] = img
	}
	o.assignMu.Lock()
	for mac, img := range o.assigned {
		out[mac] = img
	}
	o.assignMu.Unlock()
	return out
}

// credRevoker spends a client's one-time credential when its deployment
// ends (the agent reported done or failed).
type credRevoker struct {
	next tracker.Emitter
	o    *Orchestrator
}

func (r credRevoker) Emit(e tracker.Event) {
	if e.MAC != "" && e.Stage == tracker.StageApply && (e.Event == tracker.KindDone || e.Event == tracker.KindError) {
		r.o.Creds.Revoke(e.MAC)
	}
	r.next.Emit(e)
}

// accountLookup lets the RPC and SMB servers find one-time credentials.
func (o *Orchestrator) accountLookup(user string) (dcerpc.Account, bool) { return o.Creds.Lookup(user) }
