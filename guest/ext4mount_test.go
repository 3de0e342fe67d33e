package guest

import (
	"path/filepath"
	"testing"

	"patchbay/guest/internal/ext4test"
)

// ext4Layout is testLayout on a loop-mounted ext4 of the test's own (see
// ext4test.Mount): MOVE_EXT, FIEMAP and the journal flag are tested there,
// never on the host's temp dir, and under mount options the host's own
// file system does not have (data=journal needs no CAP_SYS_RESOURCE,
// unlike chattr +j).
func ext4Layout(t *testing.T, writers int, opts string) Layout {
	t.Helper()
	l := testLayout(t, writers)
	l.Dir = filepath.Join(ext4test.Mount(t, opts), "work")
	return l
}
