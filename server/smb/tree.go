package smb

import (
	"encoding/binary"
	"strings"

	"github.com/netdeploy/netdeploy/server/tracker"
)

// tree is a tree connect ([MS-SMB2] 3.3.1.10).
type tree struct {
	id    uint32
	share *share
}

// TREE_CONNECT ([MS-SMB2] 2.2.9, 2.2.10).
const (
	shareTypeDisk = 0x01
	shareTypePipe = 0x02

	shareFlagEncrypt         = 0x00008000
	shareFlagNoCaching       = 0x00000030
	treeFlagExtensionPresent = 0x0004

	accessReadOnly = 0x001200A9 // FILE_GENERIC_READ | FILE_EXECUTE
	accessPipe     = 0x001F01FF
)

// treeConnect connects to a share ([MS-SMB2] 3.3.5.7).
func (c *conn) treeConnect(r *request, w *response) (Status, error) {
	b := r.body()
	if len(b) < 8 || binary.LittleEndian.Uint16(b) != 9 {
		return StatusInvalidParameter, nil
	}
	if c.dialect == dialect311 && binary.LittleEndian.Uint16(b[2:])&treeFlagExtensionPresent != 0 {
		return StatusNotSupported, nil
	}
	raw, ok := sub(r.msg, uint64(binary.LittleEndian.Uint16(b[4:])), uint64(binary.LittleEndian.Uint16(b[6:])))
	if !ok || len(raw) == 0 {
		return StatusInvalidParameter, nil
	}
	path, ok := fromUTF16(raw)
	if !ok {
		return StatusInvalidParameter, nil
	}
	// \\server\share
	name := path
	if strings.HasPrefix(path, `\\`) {
		_, name, ok = strings.Cut(path[2:], `\`)
		if !ok {
			return StatusBadNetworkName, nil
		}
	}
	sh := c.srv.findShare(name)
	if sh == nil {
		c.log.Info("smb no such share", "share", name)
		return StatusBadNetworkName, nil
	}
	s := r.sess
	if sh.encrypt && s.encKey == nil {
		// A 2.x client, or a guest session, cannot encrypt.
		c.log.Info("smb share needs encryption", "share", sh.name, "dialect", dialectName(c.dialect))
		return StatusAccessDenied, nil
	}
	if len(s.trees) >= MaxTrees {
		return StatusInsufficientResources, nil
	}
	s.nextTree++
	t := &tree{id: s.nextTree, share: sh}
	s.trees[t.id] = t
	w.treeID = t.id
	typ, access := byte(shareTypeDisk), uint32(accessReadOnly)
	flags := uint32(0)
	if sh.ipc {
		typ, access = shareTypePipe, accessPipe
		flags = shareFlagNoCaching
	}
	if sh.encrypt {
		flags |= shareFlagEncrypt
	}
	w.buf.u16(16)
	w.buf.u8(typ)
	w.buf.u8(0)
	w.buf.u32(flags)
	w.buf.u32(0) // Capabilities
	w.buf.u32(access)
	if !sh.ipc {
		c.log.Debug("smb tree connect", "share", sh.name, "account", s.account)
		c.event(tracker.Event{Event: tracker.KindProgress, Detail: "tree " + sh.name})
	}
	return StatusSuccess, nil
}

// treeDisconnect ([MS-SMB2] 3.3.5.8) closes the tree's open files.
func (c *conn) treeDisconnect(r *request, w *response) (Status, error) {
	for _, o := range c.opens {
		if o.tree == r.tree {
			o.close(c)
			delete(c.opens, o.id.Volatile)
		}
	}
	delete(r.sess.trees, r.tree.id)
	w.buf.u16(4)
	w.buf.u16(0)
	return StatusSuccess, nil
}
