package gitops

import "testing/fstest"

func mapFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for k, v := range files {
		m[k] = &fstest.MapFile{Data: []byte(v)}
	}
	return m
}

// starterFS is the repository tf init writes with files.
func starterFS(files []starterFile) fstest.MapFS {
	m := fstest.MapFS{}
	for _, f := range files {
		m[f.name] = &fstest.MapFile{Data: []byte(f.body)}
	}
	return m
}
