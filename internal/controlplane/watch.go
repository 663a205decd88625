package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/registry"
)

// maxFileBytes bounds one rule file.
const maxFileBytes = 8 << 20

// stamp is what the poller remembers of a file: a file whose modification
// time and size are unchanged is not read again.
type stamp struct {
	mtime time.Time
	size  int64
	sum   [32]byte
	data  []byte
}

// dirScan is one look at the rules directory.
type dirScan struct {
	files  []sourceFile
	stamps map[string]stamp
	digest string // of every file's name and content; "" when err != nil
	err    error
}

// isRuleFile selects *.yaml and *.yml, skipping hidden files (editors'
// swap and backup files start with a dot).
func isRuleFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false
	}
	ext := filepath.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// scanDir reads the rule files of dir (not its subdirectories), sorted by
// name, reusing prev for files whose time and size did not change.
func scanDir(dir string, prev map[string]stamp) dirScan {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return dirScan{err: fmt.Errorf("rules directory: %w", err)}
	}
	sc := dirScan{stamps: map[string]stamp{}}
	h := sha256.New()
	for _, e := range ents {
		if !isRuleFile(e.Name()) {
			continue
		}
		full := filepath.Join(dir, e.Name())
		info, err := os.Stat(full) // follows symlinks (ConfigMap mounts)
		if err != nil {
			if os.IsNotExist(err) {
				continue // removed while we looked
			}
			return dirScan{err: err}
		}
		if !info.Mode().IsRegular() {
			continue
		}
		if info.Size() > maxFileBytes {
			return dirScan{err: fmt.Errorf("%s: %d bytes, over the %d byte limit", full, info.Size(), maxFileBytes)}
		}
		st, ok := prev[full]
		if !ok || !st.mtime.Equal(info.ModTime()) || st.size != info.Size() {
			data, err := os.ReadFile(full)
			if err != nil {
				if os.IsNotExist(err) {
					continue
				}
				return dirScan{err: err}
			}
			if len(data) > maxFileBytes {
				return dirScan{err: fmt.Errorf("%s: over the %d byte limit", full, maxFileBytes)}
			}
			st = stamp{mtime: info.ModTime(), size: info.Size(), sum: sha256.Sum256(data), data: data}
		}
		sc.stamps[full] = st
		sc.files = append(sc.files, sourceFile{name: full, data: st.data})
		fmt.Fprintf(h, "%s\x00%x\x00", full, st.sum)
	}
	sort.Slice(sc.files, func(i, j int) bool { return sc.files[i].name < sc.files[j].name })
	if len(sc.files) == 0 {
		return dirScan{err: fmt.Errorf("rules directory %s: no rule files (*.yaml, *.yml)", dir)}
	}
	sc.digest = hex.EncodeToString(h.Sum(nil))
	return sc
}

// Check loads the rules in dir as the control plane would and returns the
// warnings, or a *RulesError listing every problem with its file and line.
// It does not contact a registry: subsets are checked against static
// endpoints only.
func Check(dir string) (warnings []Problem, err error) {
	sc := scanDir(dir, nil)
	if sc.err != nil {
		return nil, &RulesError{Problems: []Problem{{Message: sc.err.Error()}}}
	}
	_, errs, warns := loadRules(sc.files, nil)
	if len(errs) > 0 {
		return warns, &RulesError{Problems: errs}
	}
	return warns, nil
}

// loadRules parses, validates and compiles files; errs refuse the set.
func loadRules(files []sourceFile, instances map[string][]registry.Instance) (*model, []Problem, []Problem) {
	rs, ps := buildRules(files)
	errs, warns := ps.split()
	if len(errs) > 0 {
		return nil, errs, warns
	}
	rs.warnings = warns
	m, err := compile(rs, instances)
	if err != nil {
		return nil, []Problem{{Message: "compile: " + err.Error()}}, warns
	}
	return m, nil, append(append([]Problem(nil), warns...), m.warnings...)
}
