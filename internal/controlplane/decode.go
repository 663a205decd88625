package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file turns YAML into the rule structs of rules.go. yaml.v3's own
// decoder forgets line numbers and, inside custom unmarshalers, unknown
// fields; this one walks the node tree by reflection over `yaml` tags,
// records each struct's file and line, and reports unknown fields,
// duplicate keys and wrong kinds at their line.

// maxNodes bounds the nodes one file may make the decoder visit, aliases
// included, so that a "billion laughs" file costs little.
const maxNodes = 1 << 20

// positioned is implemented by every rule struct (through its embedded
// pos) so the decoder can record where it and its fields were written.
type positioned interface {
	setPos(file string, line int)
	setKey(key string, line int)
}

// scalar is implemented by field types that parse their own text
// (durations).
type scalar interface{ parseScalar(s string) error }

var (
	positionedType = reflect.TypeFor[positioned]()
	scalarType     = reflect.TypeFor[scalar]()
)

type decoder struct {
	file  string
	probs *problems
	left  int // node budget
}

// parseFile decodes every YAML document of one rule file into out.
func parseFile(file string, data []byte, probs *problems) *ruleFile {
	out := &ruleFile{}
	docs, err := yamlDocuments(data)
	if err != nil {
		probs.errorAt(file, yamlErrorLine(err), "%s", yamlErrorText(err))
		return out
	}
	d := &decoder{file: file, probs: probs, left: maxNodes}
	for _, doc := range docs {
		n := doc
		if n.Kind == yaml.DocumentNode {
			if len(n.Content) == 0 {
				continue
			}
			n = n.Content[0]
		}
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			continue // a document of comments only
		}
		var f ruleFile
		if !d.value(n, reflect.ValueOf(&f).Elem(), "") {
			continue
		}
		out.Services = append(out.Services, f.Services...)
		out.Routes = append(out.Routes, f.Routes...)
		out.Sidecars = append(out.Sidecars, f.Sidecars...)
	}
	return out
}

// yamlDocuments parses data into node trees. yaml.v3 is third-party code
// fed with bytes from files: a panic in it becomes an error.
func yamlDocuments(data []byte) (docs []*yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			docs, err = nil, fmt.Errorf("yaml: cannot parse: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		n := &yaml.Node{}
		err := dec.Decode(n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, n)
	}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlErrorLine extracts the line number yaml.v3 puts in its messages.
func yamlErrorLine(err error) int {
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func yamlErrorText(err error) string {
	s := yamlLineRE.ReplaceAllString(err.Error(), "")
	s = strings.TrimPrefix(s, "yaml: ")
	return "YAML syntax: " + s
}

// resolve follows aliases; false when the budget is spent.
func (d *decoder) resolve(n *yaml.Node) (*yaml.Node, bool) {
	for i := 0; n.Kind == yaml.AliasNode; i++ {
		if n.Alias == nil || i > 100 {
			d.probs.errorAt(d.file, n.Line, "bad alias")
			return nil, false
		}
		n = n.Alias
	}
	d.left--
	if d.left < 0 {
		if d.left == -1 {
			d.probs.errorAt(d.file, n.Line, "file too large or too many aliases (over %d nodes)", maxNodes)
		}
		return nil, false
	}
	return n, true
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func sub(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// value decodes n into v; path names the field in messages. It returns
// false after reporting a problem.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) bool {
	n, ok := d.resolve(n)
	if !ok {
		return false
	}
	if v.Kind() != reflect.Pointer && v.CanAddr() && v.Addr().Type().Implements(scalarType) {
		if n.Kind != yaml.ScalarNode {
			d.probs.errorAt(d.file, n.Line, "%s: want a string, got %s", path, kindName(n))
			return false
		}
		if err := v.Addr().Interface().(scalar).parseScalar(n.Value); err != nil {
			d.probs.errorAt(d.file, n.Line, "%s: %v", path, err)
			return false
		}
		return true
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			return true
		}
		p := reflect.New(v.Type().Elem())
		if !d.value(n, p.Elem(), path) {
			return false
		}
		v.Set(p)
		return true
	case reflect.Struct:
		return d.structure(n, v, path)
	case reflect.Slice:
		if isNull(n) {
			return true
		}
		if n.Kind != yaml.SequenceNode {
			d.probs.errorAt(d.file, n.Line, "%s: want a list, got %s", path, kindName(n))
			return false
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		good := true
		for i, c := range n.Content {
			if !d.value(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i)) {
				good = false
			}
		}
		v.Set(s)
		return good
	case reflect.Map:
		return d.stringMap(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || isNull(n) {
			d.probs.errorAt(d.file, n.Line, "%s: want a string, got %s", path, kindName(n))
			return false
		}
		v.SetString(n.Value)
		return true
	case reflect.Int:
		i, err := strconv.Atoi(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.probs.errorAt(d.file, n.Line, "%s: want an integer, got %s", path, kindName(n))
			return false
		}
		v.SetInt(int64(i))
		return true
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.probs.errorAt(d.file, n.Line, "%s: want true or false, got %s", path, kindName(n))
			return false
		}
		v.SetBool(b)
		return true
	}
	d.probs.errorAt(d.file, n.Line, "%s: cannot decode into %s", path, v.Type()) // a defect in rules.go
	return false
}

// structure decodes a mapping into a struct by its yaml tags.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) bool {
	if n.Kind != yaml.MappingNode {
		what := path
		if what == "" {
			what = "the file"
		}
		d.probs.errorAt(d.file, n.Line, "%s: want a mapping, got %s", what, kindName(n))
		return false
	}
	var at positioned
	if v.CanAddr() && v.Addr().Type().Implements(positionedType) {
		at = v.Addr().Interface().(positioned)
		at.setPos(d.file, n.Line)
	}
	fields := fieldsOf(v.Type())
	seen := map[string]int{}
	good := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, ok := d.resolve(n.Content[i])
		if !ok {
			return false
		}
		if k.Kind != yaml.ScalarNode {
			d.probs.errorAt(d.file, k.Line, "%s: keys must be strings", orFile(path))
			good = false
			continue
		}
		if k.Value == "<<" {
			d.probs.errorAt(d.file, k.Line, "%s: merge keys (<<) are not supported", orFile(path))
			good = false
			continue
		}
		if line, dup := seen[k.Value]; dup {
			d.probs.errorAt(d.file, k.Line, "%s: %q given twice (also line %d)", orFile(path), k.Value, line)
			good = false
			continue
		}
		seen[k.Value] = k.Line
		if at != nil {
			at.setKey(k.Value, k.Line)
		}
		idx, known := fields[k.Value]
		if !known {
			d.probs.errorAt(d.file, k.Line, "%s: unknown field %q (known: %s)", orFile(path), k.Value, strings.Join(fieldNames(fields), ", "))
			good = false
			continue
		}
		if !d.value(n.Content[i+1], v.Field(idx), sub(path, k.Value)) {
			good = false
		}
	}
	return good
}

func orFile(path string) string {
	if path == "" {
		return "top level"
	}
	return path
}

// stringMap decodes a mapping of scalars (labels, metadata). Numbers and
// booleans keep their text: `version: 1.10` is "1.10".
func (d *decoder) stringMap(n *yaml.Node, v reflect.Value, path string) bool {
	if isNull(n) {
		return true
	}
	if n.Kind != yaml.MappingNode {
		d.probs.errorAt(d.file, n.Line, "%s: want a mapping, got %s", path, kindName(n))
		return false
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]int{}
	good := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, ok := d.resolve(n.Content[i])
		if !ok {
			return false
		}
		val, ok := d.resolve(n.Content[i+1])
		if !ok {
			return false
		}
		switch {
		case k.Kind != yaml.ScalarNode || isNull(k) || k.Value == "<<":
			d.probs.errorAt(d.file, k.Line, "%s: keys must be strings", path)
			good = false
		case val.Kind != yaml.ScalarNode || isNull(val):
			d.probs.errorAt(d.file, val.Line, "%s.%s: want a string, got %s", path, k.Value, kindName(val))
			good = false
		default:
			if line, dup := seen[k.Value]; dup {
				d.probs.errorAt(d.file, k.Line, "%s: %q given twice (also line %d)", path, k.Value, line)
				good = false
				continue
			}
			seen[k.Value] = k.Line
			m.SetMapIndex(reflect.ValueOf(k.Value), reflect.ValueOf(val.Value))
		}
	}
	v.Set(m)
	return good
}

// fieldsOf maps yaml tag names to field indexes.
func fieldsOf(t reflect.Type) map[string]int {
	out := map[string]int{}
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		out[tag] = i
	}
	return out
}

func fieldNames(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
