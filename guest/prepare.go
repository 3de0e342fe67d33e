package guest

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// PrepareFile is one file's entry in the prepare report.
type PrepareFile struct {
	Name        string `json:"name"`
	Size        int64  `json:"size"`
	Flags       uint32 `json:"flags"`
	JournalData bool   `json:"journal_data"`
	FlagsError  string `json:"flags_error,omitempty"`
}

// PrepareReport is the JSON document printed by `pbguest prepare`.
type PrepareReport struct {
	Files            []PrepareFile `json:"files"`
	JournalDataFiles int           `json:"journal_data_files"`
}

// Prepare creates or truncates every work file, writes generation 0 to
// every block, fsyncs, and optionally sets FS_JOURNAL_DATA_FL. Failing to
// set the flag when asked is an error; failing to read flags otherwise is
// only reported.
func Prepare(l Layout, journalData bool) (PrepareReport, error) {
	if err := l.Validate(); err != nil {
		return PrepareReport{}, err
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return PrepareReport{}, fmt.Errorf("create dir: %w", err)
	}
	rep := PrepareReport{Files: []PrepareFile{}}
	for i := 0; i < l.Files; i++ {
		pf, err := prepareFile(l, i, journalData)
		if err != nil {
			return rep, err
		}
		if pf.JournalData {
			rep.JournalDataFiles++
		}
		rep.Files = append(rep.Files, pf)
	}
	return rep, nil
}

func prepareFile(l Layout, i int, journalData bool) (PrepareFile, error) {
	path := l.Path(i)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return PrepareFile{}, fmt.Errorf("prepare: %w", err)
	}
	defer f.Close()

	// Write in chunks of blocks so prepare stays fast for large layouts.
	const chunkBlocks = 64
	buf := make([]byte, chunkBlocks*l.BlockSize)
	for b := 0; b < l.Blocks; b += chunkBlocks {
		n := min(chunkBlocks, l.Blocks-b)
		for k := 0; k < n; k++ {
			EncodeBlock(buf[k*l.BlockSize:(k+1)*l.BlockSize], Header{
				File: uint32(i), Block: uint32(b + k), Writer: uint32(l.Owner(i, b+k)), Gen: 0, Seed: l.Seed,
			})
		}
		if _, err := f.WriteAt(buf[:n*l.BlockSize], int64(b)*int64(l.BlockSize)); err != nil {
			return PrepareFile{}, fmt.Errorf("prepare write %s: %w", path, err)
		}
	}
	if err := f.Sync(); err != nil {
		return PrepareFile{}, fmt.Errorf("prepare fsync %s: %w", path, err)
	}

	fd := int(f.Fd())
	pf := PrepareFile{Name: FileName(i), Size: l.FileSize()}
	if journalData {
		flags, err := GetFlags(fd)
		if err != nil {
			return pf, fmt.Errorf("prepare --journal-data %s: %w", path, err)
		}
		if err := SetFlags(fd, flags|FSJournalDataFL); err != nil {
			return pf, fmt.Errorf("prepare --journal-data %s (needs ext4 and CAP_SYS_RESOURCE): %w", path, err)
		}
	}
	flags, err := GetFlags(fd)
	switch {
	case err != nil && journalData:
		return pf, fmt.Errorf("prepare read back flags %s: %w", path, err)
	case err != nil:
		pf.FlagsError = err.Error()
	default:
		pf.Flags = flags
		pf.JournalData = flags&FSJournalDataFL != 0
	}
	if journalData && !pf.JournalData {
		return pf, fmt.Errorf("prepare %s: FS_JOURNAL_DATA_FL did not stick (flags %#x)", path, flags)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return pf, fmt.Errorf("prepare stat %s: %w", path, err)
	}
	pf.Size = st.Size
	return pf, nil
}
