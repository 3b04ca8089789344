package imaging

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ManifestSuffix is added to a raw image's file name to name its manifest:
// win11.img.zst is described by win11.img.zst.json beside it.
const ManifestSuffix = ".json"

// MaxManifestSize caps a manifest file.
const MaxManifestSize = 1 << 20

// manifestFields are the keys a manifest may have, in documentation order.
const manifestFields = "name, description, arch, size, sha256, target_disk"

// Manifest describes a raw image (see the package documentation). Every
// field is optional; zero means not given.
type Manifest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Arch        string `json:"arch"`        // amd64, x86, arm64, arm, ia64
	Size        int64  `json:"size"`        // uncompressed bytes, > 0
	SHA256      string `json:"sha256"`      // of the uncompressed image, 64 hex digits (stored lower case)
	TargetDisk  string `json:"target_disk"` // hint for the imaging agent, e.g. "nvme0n1" or "0"
}

// Manifest errors, wrapped in a *ManifestError; test with errors.Is.
var (
	ErrUnknownField   = errors.New("unknown field")
	ErrBadManifest    = errors.New("invalid manifest")
	ErrLonelyManifest = errors.New("manifest without an image")
)

// ManifestError is a manifest that was refused. File is the manifest's path
// relative to images_dir; Field the key at fault, or "" when the document
// as a whole is.
type ManifestError struct {
	File  string
	Field string
	Err   error
}

func (e *ManifestError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("manifest %s: field %q: %v", e.File, e.Field, e.Err)
	}
	return fmt.Sprintf("manifest %s: %v", e.File, e.Err)
}

func (e *ManifestError) Unwrap() error { return e.Err }

// ParseManifest reads a manifest: one JSON object with the keys above, none
// repeated, nothing after it. file names it in errors. The result is
// validated (arch from the list, size positive, sha256 64 hex digits, no
// control characters in the one-line fields).
func ParseManifest(file string, data []byte) (Manifest, error) {
	var m Manifest
	bad := func(field, format string, args ...any) error {
		return &ManifestError{File: file, Field: field, Err: fmt.Errorf("%w: "+format, append([]any{ErrBadManifest}, args...)...)}
	}
	if len(data) > MaxManifestSize {
		return m, bad("", "%d bytes, at most %d", len(data), MaxManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err == io.EOF {
		return m, bad("", "empty file, want a JSON object")
	}
	if err != nil {
		return m, bad("", "not JSON: %v", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return m, bad("", "want a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return m, bad("", "not JSON: %v", err)
		}
		key, _ := tok.(string) // inside an object the decoder only yields string keys
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return m, bad(key, "not JSON: %v", err)
		}
		if seen[key] {
			return m, bad(key, "given twice")
		}
		seen[key] = true
		switch key {
		case "name":
			err = oneLine(raw, &m.Name)
		case "description":
			err = jsonString(raw, &m.Description)
		case "arch":
			if err = oneLine(raw, &m.Arch); err == nil {
				switch m.Arch {
				case "", "amd64", "x86", "arm64", "arm", "ia64":
				default:
					err = fmt.Errorf("%q, want amd64, x86, arm64, arm or ia64", m.Arch)
				}
			}
		case "size":
			if string(raw) != "null" {
				if err = json.Unmarshal(raw, &m.Size); err != nil || m.Size <= 0 {
					err = fmt.Errorf("%s, want a positive whole number of bytes", raw)
				}
			}
		case "sha256":
			if err = oneLine(raw, &m.SHA256); err == nil && m.SHA256 != "" {
				m.SHA256 = strings.ToLower(m.SHA256)
				if b, herr := hex.DecodeString(m.SHA256); herr != nil || len(b) != 32 {
					err = fmt.Errorf("%q, want 64 hex digits", m.SHA256)
				}
			}
		case "target_disk":
			err = oneLine(raw, &m.TargetDisk)
		default:
			return m, &ManifestError{File: file, Field: key, Err: fmt.Errorf("%w (known: %s)", ErrUnknownField, manifestFields)}
		}
		if err != nil {
			return m, bad(key, "%v", err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return m, bad("", "not JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return m, bad("", "data after the JSON object")
	}
	return m, nil
}

// jsonString decodes a JSON string (null leaves dst empty).
func jsonString(raw json.RawMessage, dst *string) error {
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("%s, want a string", raw)
	}
	return nil
}

// oneLine decodes a JSON string without control characters.
func oneLine(raw json.RawMessage, dst *string) error {
	if err := jsonString(raw, dst); err != nil {
		return err
	}
	if i := strings.IndexFunc(*dst, unicode.IsControl); i >= 0 {
		r, _ := utf8.DecodeRuneInString((*dst)[i:])
		return fmt.Errorf("control character %U", r)
	}
	return nil
}
