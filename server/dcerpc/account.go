package dcerpc

import "github.com/netdeploy/netdeploy/server/ntlmssp"

// NTHash returns the NT hash of a password for Account.NTHash: MD4 of
// its UTF-16LE encoding ([MS-NLMP] 3.3.1, NTOWFv1).
func NTHash(password string) [16]byte { return ntlmssp.NTHash(password) }
