package smb

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// IOCTL ([MS-SMB2] 2.2.31, 2.2.32, 3.3.5.15).
const (
	fsctlDFSGetReferrals        = 0x00060194
	fsctlDFSGetReferralsEx      = 0x000601B0
	fsctlPipeTransceive         = 0x0011C017
	fsctlValidateNegotiateInfo  = 0x00140204
	fsctlQueryNetworkInterfaces = 0x001401FC
	ioctlIsFsctl                = 0x00000001
	ioctlRequestFixed           = 56
)

func (c *conn) ioctl(r *request, w *response) (Status, error) {
	b := r.body()
	if len(b) < ioctlRequestFixed || binary.LittleEndian.Uint16(b) != 57 {
		return StatusInvalidParameter, nil
	}
	code := binary.LittleEndian.Uint32(b[4:])
	in, ok := sub(r.msg, uint64(binary.LittleEndian.Uint32(b[24:])), uint64(binary.LittleEndian.Uint32(b[28:])))
	if !ok {
		return StatusInvalidParameter, nil
	}
	maxIn := binary.LittleEndian.Uint32(b[32:])
	maxOut := binary.LittleEndian.Uint32(b[44:])
	flags := binary.LittleEndian.Uint32(b[48:])
	if !c.chargeCovers(r.h, max(uint64(len(in)), uint64(maxIn), uint64(maxOut))) || maxOut > maxReadSize {
		return StatusInvalidParameter, nil
	}
	if flags&ioctlIsFsctl == 0 {
		return StatusNotSupported, nil
	}
	fid, _ := r.fileID(8)
	var out []byte
	st := StatusSuccess
	switch code {
	case fsctlValidateNegotiateInfo:
		var err error
		if out, err = c.validateNegotiate(in); err != nil {
			return 0, err
		}
	case fsctlDFSGetReferrals, fsctlDFSGetReferralsEx:
		// Not a DFS server ([MS-SMB2] 3.3.5.15.2).
		return StatusNotFound, nil
	case fsctlPipeTransceive:
		o, st2 := c.lookupOpen(r, 8)
		if st2 != StatusSuccess {
			return st2, nil
		}
		if o.pipe == nil {
			return StatusInvalidDeviceRequest, nil
		}
		out, st = c.transceive(o, in, maxOut)
		if st != StatusSuccess && st != StatusBufferOverflow {
			return st, nil
		}
	default:
		return StatusNotSupported, nil
	}
	if uint32(len(out)) > maxOut {
		return StatusBufferTooSmall, nil
	}
	w.buf.u16(49)
	w.buf.u16(0)
	w.buf.u32(code)
	w.buf.fid(fid)
	w.buf.u32(headerLen + 48) // InputOffset
	w.buf.u32(0)
	w.buf.u32(headerLen + 48)
	w.buf.u32(uint32(len(out)))
	w.buf.u32(0)
	w.buf.u32(0)
	w.buf.bytes(out)
	return st, nil
}

// validateNegotiate checks FSCTL_VALIDATE_NEGOTIATE_INFO ([MS-SMB2]
// 3.3.5.15.12) against what NEGOTIATE saw; a mismatch means the
// negotiation was tampered with, and drops the connection.
func (c *conn) validateNegotiate(in []byte) ([]byte, error) {
	if len(in) < 24 {
		return nil, fmt.Errorf("smb: VALIDATE_NEGOTIATE_INFO of %d bytes", len(in))
	}
	caps := binary.LittleEndian.Uint32(in)
	secMode := binary.LittleEndian.Uint16(in[20:])
	count := int(binary.LittleEndian.Uint16(in[22:]))
	if 24+2*count > len(in) {
		return nil, fmt.Errorf("smb: VALIDATE_NEGOTIATE_INFO with %d dialects in %d bytes", count, len(in))
	}
	if caps != c.clientCaps || !bytes.Equal(in[4:20], c.clientGUID[:]) || secMode != c.clientSecMode {
		return nil, fmt.Errorf("smb: VALIDATE_NEGOTIATE_INFO does not match the NEGOTIATE")
	}
	var best uint16
	for _, d := range serverDialects {
		for i := range count {
			if binary.LittleEndian.Uint16(in[24+2*i:]) == d && best == 0 {
				best = d
			}
		}
	}
	if best != c.dialect {
		return nil, fmt.Errorf("smb: VALIDATE_NEGOTIATE_INFO selects dialect 0x%04x, not 0x%04x", best, c.dialect)
	}
	var out le
	out.u32(c.serverCaps)
	out.bytes(c.srv.guid[:])
	out.u16(c.serverSecMode)
	out.u16(c.dialect)
	return out, nil
}
