package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Save writes settings (dotted keys such as "dhcp.mode" to values) into
// the YAML file at path, keeping every other key and the comments already
// there. The file is replaced atomically: a crash leaves the old or the
// new file, never half of one.
func Save(path string, settings map[string]any) error {
	var doc yaml.Node
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("config: save: %w", err)
	default:
		if err := yaml.Unmarshal(old, &doc); err != nil {
			return fmt.Errorf("config: save: %s is not YAML: %w", path, err)
		}
	}
	var prefix []byte
	if doc.Kind == 0 || len(doc.Content) == 0 {
		// Empty, or only comments: keep those lines above the new keys.
		prefix = old
		if len(prefix) > 0 && prefix[len(prefix)-1] != '\n' {
			prefix = append(prefix, '\n')
		}
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config: save: %s does not hold a mapping", path)
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		var val yaml.Node
		if err := val.Encode(settings[k]); err != nil {
			return fmt.Errorf("config: save %s: %w", k, err)
		}
		if err := setPath(root, strings.Split(k, "."), &val); err != nil {
			return fmt.Errorf("config: save %s: %w", k, err)
		}
	}
	var buf bytes.Buffer
	buf.Write(prefix)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return fmt.Errorf("config: save: %w", err)
	}
	enc.Close()
	return writeAtomic(path, buf.Bytes())
}

// setPath sets path under mapping m to val, creating mappings on the way.
func setPath(m *yaml.Node, path []string, val *yaml.Node) error {
	for i := 0; i+1 < len(m.Content); i += 2 {
		// Keys match without case, as the loader reads them.
		if !strings.EqualFold(m.Content[i].Value, path[0]) {
			continue
		}
		if len(path) == 1 {
			// Keep the comment that sat beside the old value.
			val.LineComment = m.Content[i+1].LineComment
			m.Content[i+1] = val
			return nil
		}
		next := m.Content[i+1]
		if next.Kind != yaml.MappingNode {
			return fmt.Errorf("%s is not a mapping", path[0])
		}
		return setPath(next, path[1:], val)
	}
	key := &yaml.Node{Kind: yaml.ScalarNode, Value: path[0]}
	if len(path) == 1 {
		m.Content = append(m.Content, key, val)
		return nil
	}
	child := &yaml.Node{Kind: yaml.MappingNode}
	m.Content = append(m.Content, key, child)
	return setPath(child, path[1:], val)
}

func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("config: save: %w", err)
	}
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	f, err := os.CreateTemp(dir, ".netdeploy-*.yaml")
	if err != nil {
		return fmt.Errorf("config: save: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, mode)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("config: save: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
