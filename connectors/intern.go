package connectors

import (
	"hash/maphash"
	"strconv"
	"strings"
	"sync/atomic"
)

// mapCacheSlots is the size of a mapCache. An agent works on a handful of
// repositories with one or two clients, so a few hundred slots hold its
// whole working set.
const mapCacheSlots = 256

// A mapCache shares read-only maps among actions that carry the same
// values: the resource {owner, repo} of the repository an agent works on,
// the recorded headers of the client it uses. Building a small map costs
// two allocations, most of a classification's time, and these values
// repeat on nearly every request. It is direct-mapped and lock-free: a slot
// holds one immutable entry, a colliding key replaces it, so it never grows
// and adapts to a changing working set. Maps it returns must not be
// modified, by the connector or anyone after it (rules.Action says so).
type mapCache[K comparable, M any] struct {
	seed  maphash.Seed
	slots [mapCacheSlots]atomic.Pointer[mapCacheEntry[K, M]]
}

type mapCacheEntry[K comparable, M any] struct {
	key K
	m   M
}

func newMapCache[K comparable, M any]() *mapCache[K, M] {
	return &mapCache[K, M]{seed: maphash.MakeSeed()}
}

// get returns the map cached for key, whose hash is h, else the one build
// returns, which it caches under the key build returns: an equal key whose
// strings are copies, so that the cache keeps no request's larger strings
// alive.
func (c *mapCache[K, M]) get(h uint64, key K, build func(K) (K, M)) M {
	slot := &c.slots[h%mapCacheSlots]
	if e := slot.Load(); e != nil && e.key == key {
		return e.m
	}
	own, m := build(key)
	slot.Store(&mapCacheEntry[K, M]{key: own, m: m})
	return m
}

// ownerRepo is the key of a repository resource.
type ownerRepo struct{ owner, repo string }

// repoResources caches resource maps of repositories.
type repoResources struct {
	c *mapCache[ownerRepo, map[string]string]
}

func newRepoResources() repoResources {
	return repoResources{newMapCache[ownerRepo, map[string]string]()}
}

// get returns the read-only resource {owner, repo}; an empty part is left
// out.
func (r repoResources) get(owner, repo string) map[string]string {
	h := maphash.String(r.c.seed, owner)*31 ^ maphash.String(r.c.seed, repo)
	return r.c.get(h, ownerRepo{owner, repo}, buildRepoResource)
}

// buildRepoResource copies the names, which are often slices of a longer
// path.
func buildRepoResource(k ownerRepo) (ownerRepo, map[string]string) {
	k = ownerRepo{strings.Clone(k.owner), strings.Clone(k.repo)}
	m := make(map[string]string, 2)
	if k.owner != "" {
		m["owner"] = k.owner
	}
	if k.repo != "" {
		m["repo"] = k.repo
	}
	return k, m
}

// recordedHeaders are the request headers copied into actions, by their
// canonical names. It is an allow list: nothing that carries a credential is
// ever on it.
var recordedHeaders = [...]string{
	"User-Agent", "Content-Type", "Content-Encoding", "Accept", "Mcp-Method",
	"Mcp-Protocol-Version", "X-Github-Api-Version", "Npm-Command", "Git-Protocol",
}

// headerValues holds a request's recorded headers, indexed as
// recordedHeaders.
type headerValues [len(recordedHeaders)]string

// recordedHeader returns the index of the canonical header name k in
// recordedHeaders, or -1. A switch spares hashing every header of every
// request.
func recordedHeader(k string) int {
	switch k {
	case "User-Agent":
		return 0
	case "Content-Type":
		return 1
	case "Content-Encoding":
		return 2
	case "Accept":
		return 3
	case "Mcp-Method":
		return 4
	case "Mcp-Protocol-Version":
		return 5
	case "X-Github-Api-Version":
		return 6
	case "Npm-Command":
		return 7
	case "Git-Protocol":
		return 8
	}
	return -1
}

// headerMaps caches the recorded-header maps of requests.
type headerMaps struct {
	c *mapCache[headerValues, map[string]string]
}

func newHeaderMaps() headerMaps {
	return headerMaps{newMapCache[headerValues, map[string]string]()}
}

// get returns the read-only map of the non-empty values of v.
func (hm headerMaps) get(v *headerValues) map[string]string {
	var h uint64
	for i := range v {
		if v[i] != "" {
			h = h*31 ^ maphash.String(hm.c.seed, v[i]) + uint64(i)
		}
	}
	return hm.c.get(h, *v, buildHeaderMap)
}

// buildHeaderMap copies the values, which may be prefixes of longer ones.
func buildHeaderMap(v headerValues) (headerValues, map[string]string) {
	m := make(map[string]string, 4)
	for i, s := range v {
		if s != "" {
			v[i] = strings.Clone(s)
			m[recordedHeaders[i]] = v[i]
		}
	}
	return v, m
}

// paramKV is one path parameter: its name in the route template and its
// unescaped value.
type paramKV struct{ name, value string }

// maxSharedParams bounds the path parameters of a shared params map: a
// small key compares fast, and routes have one or two besides the
// repository.
const maxSharedParams = 2

// pathParams are the path parameters of a request other than its
// repository, the whole of its params when the route reads no body.
type pathParams struct {
	n  int
	kv [maxSharedParams]paramKV
}

// pathParamMaps caches params maps made from path parameters alone.
type pathParamMaps struct {
	c *mapCache[pathParams, map[string]any]
}

func newPathParamMaps() pathParamMaps {
	return pathParamMaps{newMapCache[pathParams, map[string]any]()}
}

// get returns the read-only params of pp: number as an int (already
// checked), the rest as strings.
func (pm pathParamMaps) get(pp *pathParams) map[string]any {
	h := uint64(pp.n)
	for i := 0; i < pp.n; i++ {
		h = h*31 ^ maphash.String(pm.c.seed, pp.kv[i].name)
		h = h*31 ^ maphash.String(pm.c.seed, pp.kv[i].value)
	}
	return pm.c.get(h, *pp, buildPathParams)
}

func buildPathParams(pp pathParams) (pathParams, map[string]any) {
	m := make(map[string]any, pp.n)
	for i := 0; i < pp.n; i++ {
		kv := &pp.kv[i]
		kv.value = strings.Clone(kv.value)
		if kv.name == "number" {
			n, _ := strconv.Atoi(kv.value)
			m[kv.name] = n
			continue
		}
		m[kv.name] = kv.value
	}
	return pp, m
}
