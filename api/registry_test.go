package api

import "testing"

func TestRegistryLookup(t *testing.T) {
	r := NewRegistry[int]("thing")
	r.Register("a.b", []string{"type/A"}, 1)
	r.Register("c.d", []string{"type/C"}, 2)
	cases := []struct {
		name, typeURL string
		want          int
		ok            bool
	}{
		{"a.b", "type/A", 1, true},
		{"whatever", "type/C", 2, true}, // the type decides, the name is a label
		{"a.b", "type/C", 2, true},
		{"a.b", "", 1, true},        // no typed_config: by name
		{"a.b", "type/X", 0, false}, // known name, unknown type: refused
		{"x.y", "", 0, false},
	}
	for _, c := range cases {
		got, ok := r.Lookup(c.name, c.typeURL)
		if got != c.want || ok != c.ok {
			t.Errorf("Lookup(%q, %q) = %d, %v; want %d, %v", c.name, c.typeURL, got, ok, c.want, c.ok)
		}
	}
	if n := r.Names(); len(n) != 2 || n[0] != "a.b" {
		t.Errorf("Names = %v", n)
	}
}

func TestRegistryDuplicatePanics(t *testing.T) {
	for _, c := range []struct{ name, typ string }{{"a", "t2"}, {"b", "t1"}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("registering %q/%q twice did not panic", c.name, c.typ)
				}
			}()
			r := NewRegistry[int]("thing")
			r.Register("a", []string{"t1"}, 1)
			r.Register(c.name, []string{c.typ}, 2)
		}()
	}
}
