package gitops

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"time"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// maxTreeFileBytes bounds one file read from a commit; policy files are
// limited far below this by rules, so this only stops a hostile blob from
// being inflated into memory by another reader.
const maxTreeFileBytes = 16 << 20

// TreeFS returns a read-only fs.FS over a commit's tree. Regular and
// executable files and directories are visible; symbolic links and
// submodules are not files of the policy and cannot be opened (reading
// through a link could leave the commit). Modification times are the
// commit time, so that nothing depends on the checkout.
func TreeFS(tree *object.Tree, modTime time.Time) fs.FS {
	return &treeFS{root: tree, mtime: modTime}
}

type treeFS struct {
	root  *object.Tree
	mtime time.Time
}

var (
	_ fs.ReadDirFS  = (*treeFS)(nil)
	_ fs.ReadFileFS = (*treeFS)(nil)
	_ fs.StatFS     = (*treeFS)(nil)
)

func (t *treeFS) lookup(op, name string) (*object.TreeEntry, *object.Tree, error) {
	if !fs.ValidPath(name) {
		return nil, nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return nil, t.root, nil
	}
	e, err := t.root.FindEntry(name)
	if err != nil {
		return nil, nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	switch e.Mode {
	case filemode.Dir:
		sub, err := t.root.Tree(name)
		if err != nil {
			return nil, nil, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("reading tree: %w", err)}
		}
		return e, sub, nil
	case filemode.Regular, filemode.Executable, filemode.Deprecated:
		return e, nil, nil
	}
	return nil, nil, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("not a regular file (mode %s): %w", e.Mode, fs.ErrPermission)}
}

func (t *treeFS) Open(name string) (fs.File, error) {
	e, sub, err := t.lookup("open", name)
	if err != nil {
		return nil, err
	}
	if sub != nil {
		return &treeDir{fsys: t, tree: sub, info: t.dirInfo(name)}, nil
	}
	f, err := t.root.TreeEntryFile(e)
	if err != nil {
		// FindEntry found it, so the blob is missing from the store.
		return nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("reading blob: %w", err)}
	}
	if f.Size > maxTreeFileBytes {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("file of %d bytes exceeds %d", f.Size, maxTreeFileBytes)}
	}
	r, err := f.Reader()
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fmt.Errorf("reading blob: %w", err)}
	}
	return &treeFile{rc: r, info: fileInfo{name: path.Base(name), size: f.Size, mode: 0o444, mtime: t.mtime}}, nil
}

func (t *treeFS) ReadFile(name string) ([]byte, error) {
	f, err := t.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, ok := f.(*treeDir); ok {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
	}
	return io.ReadAll(f)
}

func (t *treeFS) Stat(name string) (fs.FileInfo, error) {
	_, sub, err := t.lookup("stat", name)
	if err != nil {
		return nil, err
	}
	if sub != nil {
		return t.dirInfo(name), nil
	}
	size, err := t.root.Size(name)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fmt.Errorf("reading blob: %w", err)}
	}
	return fileInfo{name: path.Base(name), size: size, mode: 0o444, mtime: t.mtime}, nil
}

func (t *treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	_, sub, err := t.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if sub == nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	return t.entries(sub), nil
}

func (t *treeFS) dirInfo(name string) fileInfo {
	return fileInfo{name: path.Base(name), mode: fs.ModeDir | 0o555, mtime: t.mtime}
}

// entries lists a tree's visible entries sorted by name; links and
// submodules are left out since they cannot be opened.
func (t *treeFS) entries(tree *object.Tree) []fs.DirEntry {
	out := make([]fs.DirEntry, 0, len(tree.Entries))
	for _, e := range tree.Entries {
		var info fileInfo
		switch e.Mode {
		case filemode.Dir:
			info = t.dirInfo(e.Name)
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			size, err := tree.Size(e.Name)
			if err != nil {
				size = -1 // the blob is missing; Open will say so
			}
			info = fileInfo{name: e.Name, size: size, mode: 0o444, mtime: t.mtime}
		default:
			continue
		}
		out = append(out, fs.FileInfoToDirEntry(info))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
}

func (i fileInfo) Name() string       { return i.name }
func (i fileInfo) Size() int64        { return i.size }
func (i fileInfo) Mode() fs.FileMode  { return i.mode }
func (i fileInfo) ModTime() time.Time { return i.mtime }
func (i fileInfo) IsDir() bool        { return i.mode.IsDir() }
func (i fileInfo) Sys() any           { return nil }

type treeFile struct {
	rc   io.ReadCloser
	info fileInfo
}

func (f *treeFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *treeFile) Read(p []byte) (int, error) { return f.rc.Read(p) }
func (f *treeFile) Close() error               { return f.rc.Close() }

type treeDir struct {
	fsys    *treeFS
	tree    *object.Tree
	info    fileInfo
	entries []fs.DirEntry
	off     int
	listed  bool
}

func (d *treeDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *treeDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errors.New("is a directory")}
}
func (d *treeDir) Close() error { return nil }

func (d *treeDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if !d.listed {
		d.entries, d.listed = d.fsys.entries(d.tree), true
	}
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return rest[:n], nil
}
