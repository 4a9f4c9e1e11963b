package rules

import (
	"slices"
	"strings"
	"sync"
)

// glob is an action-type pattern in which * matches any run of characters.
type glob struct {
	pattern string
	star    bool // holds at least one *
}

func newGlob(p string) glob { return glob{pattern: p, star: strings.Contains(p, "*")} }

func (g glob) match(s string) bool {
	if !g.star {
		return g.pattern == s
	}
	return GlobMatch(g.pattern, s)
}

// GlobMatch reports whether s matches pattern, in which * matches any run of
// characters (dots included) and every other byte matches itself. It runs in
// O(len(pattern)·len(s)) at worst, without recursion.
func GlobMatch(pattern, s string) bool {
	p, i := 0, 0
	starP, starI := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			starP, starI = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case starP >= 0:
			starI++
			p, i = starP+1, starI
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// index finds the rules whose globs can match an action type without
// trying every rule: exact types by map, globs that start with a literal
// first segment ("github.*") by that segment, the rest always. Results are
// cached per action type, up to a bound, because the set of types an agent
// produces is small and repeats.
type index struct {
	rules    []*CompiledRule
	exact    map[string][]int
	bySeg    map[string][]int
	anywhere []int

	mu    sync.RWMutex
	cache map[string][]int
}

const indexCacheMax = 8192

func newIndex(rules []*CompiledRule) *index {
	ix := &index{rules: rules, exact: map[string][]int{}, bySeg: map[string][]int{}, cache: map[string][]int{}}
	for i, r := range rules {
		for _, g := range r.globs {
			switch {
			case !g.star:
				ix.exact[g.pattern] = appendOnce(ix.exact[g.pattern], i)
			default:
				seg, _, found := strings.Cut(g.pattern, ".")
				if found && !strings.Contains(seg, "*") {
					ix.bySeg[seg] = appendOnce(ix.bySeg[seg], i)
				} else {
					ix.anywhere = appendOnce(ix.anywhere, i)
				}
			}
		}
	}
	return ix
}

func appendOnce(s []int, i int) []int {
	if len(s) > 0 && s[len(s)-1] == i {
		return s
	}
	return append(s, i)
}

// candidates returns, in policy order, the rules one of whose globs
// matches typ. The result must not be modified.
func (ix *index) candidates(typ string) []int {
	ix.mu.RLock()
	c, ok := ix.cache[typ]
	ix.mu.RUnlock()
	if ok {
		return c
	}
	c = ix.compute(typ)
	ix.mu.Lock()
	if len(ix.cache) < indexCacheMax {
		ix.cache[typ] = c
	}
	ix.mu.Unlock()
	return c
}

func (ix *index) compute(typ string) []int {
	var out []int
	seg, _, _ := strings.Cut(typ, ".")
	for _, list := range [][]int{ix.exact[typ], ix.bySeg[seg], ix.anywhere} {
		for _, i := range list {
			if slices.Contains(out, i) {
				continue
			}
			for _, g := range ix.rules[i].globs {
				if g.match(typ) {
					out = append(out, i)
					break
				}
			}
		}
	}
	slices.Sort(out)
	return out
}
