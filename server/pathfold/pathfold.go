// Package pathfold finds a file's on-disk spelling for clients that do
// not care about case (Windows: [MS-FSCC] 2.1.5 names are case-insensitive
// by default), inside an os.Root so the lookup cannot leave it.
package pathfold

import (
	"os"
	"path"
	"strings"
)

// maxEntries caps the directory entries read per component, so a huge
// directory cannot make one lookup arbitrarily expensive.
const maxEntries = 100000

// Find returns the on-disk spelling of name (slash-separated, relative to
// r), matching each component without case; an exact match wins.
func Find(r *os.Root, name string) (string, bool) {
	dir := "."
	for _, part := range strings.Split(name, "/") {
		d, err := r.Open(dir)
		if err != nil {
			return "", false
		}
		entries, err := d.ReadDir(maxEntries)
		d.Close()
		if err != nil && len(entries) == 0 {
			return "", false
		}
		found := ""
		for _, e := range entries {
			if e.Name() == part {
				found = part
				break
			}
			if found == "" && strings.EqualFold(e.Name(), part) {
				found = e.Name()
			}
		}
		if found == "" {
			return "", false
		}
		dir = path.Join(dir, found)
	}
	return dir, true
}
