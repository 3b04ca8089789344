package smb

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
)

// kdf is the SP800-108 KDF in counter mode with HMAC-SHA256 that
// [MS-SMB2] 3.1.4.2 uses: r = 32, L = 128, one iteration. label and
// context include their terminating NUL where the spec lists one.
func kdf(key, label, context []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte{0, 0, 0, 1})
	h.Write(label)
	h.Write([]byte{0})
	h.Write(context)
	h.Write([]byte{0, 0, 0, 128})
	return h.Sum(nil)[:16]
}

// cmac is AES-CMAC ([RFC 4493]), the signing algorithm of SMB 3.0 and
// 3.0.2 and one choice of 3.1.1 ([MS-SMB2] 3.1.4.1).
type cmac struct {
	b      cipher.Block
	k1, k2 [16]byte
}

func newCMAC(key []byte) (*cmac, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	c := &cmac{b: b}
	var l [16]byte
	b.Encrypt(l[:], l[:])
	shift := func(dst, src *[16]byte) {
		var carry byte
		for i := 15; i >= 0; i-- {
			dst[i] = src[i]<<1 | carry
			carry = src[i] >> 7
		}
		if src[0]&0x80 != 0 {
			dst[15] ^= 0x87
		}
	}
	shift(&c.k1, &l)
	shift(&c.k2, &c.k1)
	return c, nil
}

// sum returns the 16-byte MAC of the concatenation of parts.
func (c *cmac) sum(parts ...[]byte) [16]byte {
	var x, blk [16]byte
	n := 0 // bytes in blk
	total := 0
	for _, p := range parts {
		total += len(p)
	}
	seen := 0
	for _, p := range parts {
		for len(p) > 0 {
			if n == 16 {
				// A full block that is not the last: chain it.
				subtle.XORBytes(x[:], x[:], blk[:])
				c.b.Encrypt(x[:], x[:])
				n = 0
			}
			if n == 0 && len(p) > 16 && seen+len(p) > 16 && total-seen > 16 {
				// Fast path: whole blocks that cannot be the last one.
				k := (min(len(p), total-seen-1) / 16) * 16
				for i := 0; i < k; i += 16 {
					subtle.XORBytes(x[:], x[:], p[i:i+16])
					c.b.Encrypt(x[:], x[:])
				}
				p = p[k:]
				seen += k
				continue
			}
			m := copy(blk[n:], p)
			n += m
			p = p[m:]
			seen += m
		}
	}
	if n == 16 {
		subtle.XORBytes(blk[:], blk[:], c.k1[:])
	} else {
		blk[n] = 0x80
		clear(blk[n+1:])
		subtle.XORBytes(blk[:], blk[:], c.k2[:])
	}
	subtle.XORBytes(x[:], x[:], blk[:])
	c.b.Encrypt(x[:], x[:])
	return x
}

// ccm is AES-CCM ([RFC 3610], NIST SP800-38C) with an 11-byte nonce and
// a 16-byte tag, the SMB 3.x AES-128-CCM cipher ([MS-SMB2] 3.1.4.3).
type ccm struct{ b cipher.Block }

const (
	ccmNonceLen = 11
	tagLen      = 16
)

var errOpen = errors.New("message authentication failed")

func newCCM(key []byte) (*ccm, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return &ccm{b: b}, nil
}

// mac computes the CBC-MAC of B0, the associated data and the plaintext.
func (c *ccm) mac(nonce, aad, plain []byte) [16]byte {
	var x, blk [16]byte
	// B0: flags (Adata, M' = (16-2)/2, L' = 4-1), nonce, length.
	x[0] = 0x40 | 7<<3 | 3
	copy(x[1:12], nonce)
	binary.BigEndian.PutUint32(x[12:], uint32(len(plain)))
	c.b.Encrypt(x[:], x[:])
	// Associated data, with its 2-byte length (len(aad) < 0xff00).
	a := make([]byte, 0, 2+len(aad)+15)
	a = binary.BigEndian.AppendUint16(a, uint16(len(aad)))
	a = append(a, aad...)
	for len(a)%16 != 0 {
		a = append(a, 0)
	}
	for i := 0; i < len(a); i += 16 {
		subtle.XORBytes(x[:], x[:], a[i:i+16])
		c.b.Encrypt(x[:], x[:])
	}
	for i := 0; i < len(plain); i += 16 {
		if len(plain)-i >= 16 {
			subtle.XORBytes(x[:], x[:], plain[i:i+16])
		} else {
			clear(blk[:])
			copy(blk[:], plain[i:])
			subtle.XORBytes(x[:], x[:], blk[:])
		}
		c.b.Encrypt(x[:], x[:])
	}
	return x
}

// ctr XORs data with the key stream starting at counter 1 and returns
// S0 for the tag.
func (c *ccm) ctr(nonce, data []byte) [16]byte {
	var a, s0 [16]byte
	a[0] = 3
	copy(a[1:12], nonce)
	c.b.Encrypt(s0[:], a[:])
	binary.BigEndian.PutUint32(a[12:], 1)
	cipher.NewCTR(c.b, a[:]).XORKeyStream(data, data)
	return s0
}

// seal encrypts data in place and returns the tag.
func (c *ccm) seal(nonce, aad, data []byte) [16]byte {
	t := c.mac(nonce, aad, data)
	s0 := c.ctr(nonce, data)
	subtle.XORBytes(t[:], t[:], s0[:])
	return t
}

// open decrypts data in place and checks the tag.
func (c *ccm) open(nonce, aad, data, tag []byte) error {
	s0 := c.ctr(nonce, data)
	t := c.mac(nonce, aad, data)
	subtle.XORBytes(t[:], t[:], s0[:])
	if subtle.ConstantTimeCompare(t[:], tag) != 1 {
		return errOpen
	}
	return nil
}
