package router

import "sort"

// pathKind says how a route matches :path.
type pathKind uint8

const (
	pathPrefix    pathKind = iota // prefix of the whole :path, query included
	pathExact                     // the path part, query and fragment removed
	pathSeparated                 // path_separated_prefix: prefix then end or '/'
	pathRegex                     // safe_regex full match of the path part
)

// accepts reports whether a route of kind k whose string ends at pos in
// path matches, given that the path part of path ends at end.
func (k pathKind) accepts(path string, pos, end int) bool {
	switch k {
	case pathPrefix:
		return true
	case pathExact:
		return pos == end
	case pathSeparated:
		return pos == end || (pos < end && path[pos] == '/')
	}
	return false
}

// entry is a route registered at a radix tree node. conds is set when the
// route also matches headers, query or gRPC, so that routes without
// conditions are accepted without touching the Route (one cache miss less).
type entry struct {
	idx   int32
	kind  pathKind
	conds bool
}

// pathIndex is a radix tree over route path strings, flattened
// breadth-first into arrays: a node's children are consecutive in nodes,
// its entries consecutive in entries, and every label is a slice of one
// string. A lookup in a cold virtual host then touches a handful of cache
// lines instead of chasing a pointer per node, label and slice.
type pathIndex struct {
	nodes   []pnode
	entries []entry
	labels  string
	fold    bool // case-insensitive: labels are lower-case, input is folded
}

// pnode is one flattened node.
type pnode struct {
	first            byte  // first byte of the label (children lookup)
	labelOff, labelN int32 // label = labels[labelOff : labelOff+labelN]
	entOff, entN     int32 // entries[entOff : entOff+entN], ascending index
	kidOff, kidN     int32 // children nodes[kidOff : kidOff+kidN], by first
	min              int32 // smallest route index in the subtree
}

// child returns the index of n's child whose label starts with b, or -1.
func (x *pathIndex) child(n *pnode, b byte) int32 {
	kids := x.nodes[n.kidOff : n.kidOff+n.kidN]
	if len(kids) <= childLinearMax {
		for i := range kids {
			if kids[i].first == b {
				return n.kidOff + int32(i)
			}
		}
		return -1
	}
	lo, hi := 0, len(kids)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if kids[m].first < b {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(kids) && kids[lo].first == b {
		return n.kidOff + int32(lo)
	}
	return -1
}

// flatten lays the tree rooted at root out breadth-first.
func flatten(root *rnode, fold bool) pathIndex {
	x := pathIndex{fold: fold}
	var labels []byte
	queue := []*rnode{root}
	x.nodes = append(x.nodes, pnode{})
	for qi := 0; qi < len(queue); qi++ {
		n := queue[qi]
		p := &x.nodes[qi]
		p.labelOff, p.labelN = int32(len(labels)), int32(len(n.label))
		labels = append(labels, n.label...)
		if n.label != "" {
			p.first = n.label[0]
		}
		p.entOff, p.entN = int32(len(x.entries)), int32(len(n.entries))
		x.entries = append(x.entries, n.entries...)
		p.kidOff, p.kidN = int32(len(x.nodes)), int32(len(n.children))
		p.min = n.min
		for range n.children {
			x.nodes = append(x.nodes, pnode{})
			p = &x.nodes[qi] // append may have moved it
		}
		queue = append(queue, n.children...)
	}
	x.labels = string(labels)
	return x
}

// rnode is a node of a radix (compressed prefix) tree over route path
// strings. The tree turns "which of thousands of prefix routes can match
// this path" into one walk over the path's bytes: only routes registered
// on nodes along the walk are candidates.
type rnode struct {
	label    string   // edge label from the parent
	entries  []entry  // routes whose string ends here, ascending index
	children []*rnode // sorted by label[0]
	min      int32    // smallest route index in this subtree
}

// childLinearMax is the child count up to which child does a linear scan;
// above it a binary search is cheaper.
const childLinearMax = 8

// child returns the child whose label starts with b, or nil.
func (n *rnode) child(b byte) *rnode {
	cs := n.children
	if len(cs) <= childLinearMax {
		for _, c := range cs {
			if c.label[0] == b {
				return c
			}
		}
		return nil
	}
	lo, hi := 0, len(cs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if cs[m].label[0] < b {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(cs) && cs[lo].label[0] == b {
		return cs[lo]
	}
	return nil
}

// insert registers e under key. Routes must be inserted in ascending index
// order so that entries stay sorted.
func (n *rnode) insert(key string, e entry) {
	for {
		if key == "" {
			n.entries = append(n.entries, e)
			return
		}
		c := n.child(key[0])
		if c == nil {
			nc := &rnode{label: key, entries: []entry{e}}
			i := sort.Search(len(n.children), func(i int) bool { return n.children[i].label[0] > key[0] })
			n.children = append(n.children, nil)
			copy(n.children[i+1:], n.children[i:])
			n.children[i] = nc
			return
		}
		l := commonPrefix(key, c.label)
		if l < len(c.label) {
			split := &rnode{label: c.label[:l], children: []*rnode{c}}
			c.label = c.label[l:]
			for i := range n.children {
				if n.children[i] == c {
					n.children[i] = split
					break
				}
			}
			c = split
		}
		key = key[l:]
		n = c
	}
}

// finish computes the subtree minimum indexes; call once after inserting.
func (n *rnode) finish(none int32) int32 {
	n.min = none
	if len(n.entries) > 0 {
		n.min = n.entries[0].idx
	}
	for _, c := range n.children {
		if m := c.finish(none); m < n.min {
			n.min = m
		}
	}
	return n.min
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
