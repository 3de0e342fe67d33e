package harness

import (
	"encoding/json"

	"patchbay/safefile"
)

// writeJSON writes v to path atomically (see writeFileAtomic).
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(data, '\n'))
}

// writeFileAtomic writes data to a temporary file of a unique name in
// path's directory (two writers never share it), syncs it, renames it over
// path and syncs the directory: after a crash path holds the old or the
// new content, never a torn or empty file.
func writeFileAtomic(path string, data []byte) error {
	return safefile.WriteAtomic(path, data, 0o644)
}
