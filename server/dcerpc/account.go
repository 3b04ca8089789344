package dcerpc

import "github.com/oiweiwei/go-msrpc/ssp/crypto"

// NTHash returns the NT hash of a password for Account.NTHash: MD4 of
// its UTF-16LE encoding ([MS-NLMP] 3.3.1, NTOWFv1).
func NTHash(password string) [16]byte {
	var h [16]byte
	sum, err := crypto.MD4(utf16le(password))
	if err == nil {
		copy(h[:], sum)
	}
	return h
}
