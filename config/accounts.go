package config

import (
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf16"

	"golang.org/x/crypto/md4"
)

// Account is a resolved logon: the name and the NT hash of its password.
type Account struct {
	Name   string
	NTHash [16]byte
}

// NTHash is MD4 of the UTF-16LE password ([MS-NLMP] 3.3.1, NTOWFv1).
func NTHash(password string) [16]byte {
	u := utf16.Encode([]rune(password))
	b := make([]byte, 0, 2*len(u))
	for _, c := range u {
		b = append(b, byte(c), byte(c>>8))
	}
	h := md4.New()
	h.Write(b)
	var out [16]byte
	copy(out[:], h.Sum(nil))
	return out
}

// ParseAccounts checks the accounts key and resolves each to its NT hash.
func ParseAccounts(list []AccountConfig) ([]Account, error) {
	seen := map[string]bool{}
	out := make([]Account, 0, len(list))
	for i, a := range list {
		key := fmt.Sprintf("accounts[%d]", i)
		name := strings.TrimSpace(a.Name)
		switch {
		case name == "":
			return nil, keyErr(key+".name", "must not be empty")
		case len(name) > 256:
			return nil, keyErr(key+".name", "longer than 256 characters")
		case seen[strings.ToLower(name)]:
			return nil, keyErr(key+".name", "%q appears twice (names are case-insensitive)", name)
		case a.Password != "" && a.NTHash != "":
			return nil, keyErr(key, "give password or nt_hash, not both")
		case a.Password == "" && a.NTHash == "":
			return nil, keyErr(key, "needs password or nt_hash")
		}
		seen[strings.ToLower(name)] = true
		acc := Account{Name: name}
		if a.Password != "" {
			acc.NTHash = NTHash(a.Password)
		} else {
			b, err := hex.DecodeString(strings.TrimSpace(a.NTHash))
			if err != nil || len(b) != 16 {
				return nil, keyErr(key+".nt_hash", "want 32 hex digits")
			}
			copy(acc.NTHash[:], b)
		}
		out = append(out, acc)
	}
	return out, nil
}
