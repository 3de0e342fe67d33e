package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"patchbay/kernel"
)

func newCacheCommand() *cobra.Command {
	cache := &cobra.Command{
		Use:   "cache",
		Short: "List or prune the cache of kernels, trees, snapshots, images and ccache",
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List cached kernels, base trees, sources, snapshots, images and the ccache size",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, _ := cmd.Flags().GetString("cache")
			info, err := kernel.InspectCache(dir)
			if err != nil {
				return err
			}
			printCache(cmd.OutOrStdout(), info, time.Now())
			return nil
		},
	}
	var olderThan time.Duration
	var keepTrees, dryRun bool
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove kernels, trees and snapshots not used recently, and snapshots of removed kernels (never one whose lock is held)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, _ := cmd.Flags().GetString("cache")
			res, err := kernel.Prune(dir, olderThan, keepTrees, dryRun)
			if res != nil {
				printPrune(cmd.OutOrStdout(), res, dryRun, time.Now())
			}
			if err != nil {
				return fmt.Errorf("cache prune: %w", err)
			}
			return nil
		},
	}
	prune.Flags().DurationVar(&olderThan, "older-than", 720*time.Hour, "remove what was last used longer ago than this")
	prune.Flags().BoolVar(&keepTrees, "keep-trees", false, "keep base trees and sources (rebuilding a base takes minutes)")
	prune.Flags().BoolVar(&dryRun, "dry-run", false, "only say what would be removed")
	cache.AddCommand(ls, prune)
	return cache
}

func printCache(w io.Writer, info *kernel.CacheInfo, now time.Time) {
	fmt.Fprintf(w, "cache %s\n", info.Dir)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\nKERNELS\tRELEASE\tVARIANT\tSOURCE\tPATCHES\tSIZE\tLAST USED\n")
	var total int64
	for _, k := range info.Kernels {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s%s\n", k.Key, dash(k.Release), dash(k.Variant), dash(shorten(k.Source, 48)),
			patchSummary(k.Patches), human(k.Size), age(now, k.LastUsed), inUse(k.InUse))
		total += k.Size
	}
	fmt.Fprintf(tw, "(%d)\t\t\t\t\t%s\t\n", len(info.Kernels), human(total))
	fmt.Fprintf(tw, "\nTREES\tSTATE\tFRAGMENTS\tSOURCE\tSRC\tSIZE\tLAST USED\n")
	total = 0
	for _, t := range info.Trees {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s%s\n", t.Key, t.State, dash(strings.Join(t.Patches, "+")), dash(shorten(t.Source, 48)),
			dash(t.SrcDir), human(t.Size), age(now, t.LastUsed), inUse(t.InUse))
		total += t.Size
	}
	for _, s := range info.Sources {
		fmt.Fprintf(tw, "src/%s\tpristine\t\t\t\t%s\t%s%s\n", s.Key, human(s.Size), age(now, s.LastUsed), inUse(s.InUse))
		total += s.Size
	}
	fmt.Fprintf(tw, "(%d trees, %d sources)\t\t\t\t\t%s\t\n", len(info.Trees), len(info.Sources), human(total))
	fmt.Fprintf(tw, "\nSNAPSHOTS\tRELEASE\tKERNEL\tSHAPE\t\tSIZE\tLAST USED\n")
	total = 0
	for _, sn := range info.Snapshots {
		kernel := dash(sn.KernelKey)
		if sn.KernelKey != "" && sn.Release == "" {
			kernel += " (gone)"
		}
		// The shape ends with what tells two snapshots of a kernel apart:
		// memory, CPUs, scratch size, accelerator.
		shape := sn.Source
		if r := []rune(shape); len(r) > 40 {
			shape = "…" + string(r[len(r)-39:])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t%s\t%s%s\n", sn.Key, dash(sn.Release), kernel, dash(shape),
			human(sn.Size), age(now, sn.LastUsed), inUse(sn.InUse))
		total += sn.Size
	}
	fmt.Fprintf(tw, "(%d)\t\t\t\t\t%s\t\n", len(info.Snapshots), human(total))
	if len(info.Leftovers)+len(info.Logs) > 0 {
		fmt.Fprintf(tw, "\nOTHER\t\t\t\t\tSIZE\tAGE\n")
		for _, l := range info.Leftovers {
			fmt.Fprintf(tw, "%s\tleftover of a crashed build or save\t\t\t\t%s\t%s\n", l.Key, human(l.Size), age(now, l.LastUsed))
		}
		for _, l := range info.Logs {
			fmt.Fprintf(tw, "logs/%s\tlog of a failed build\t\t\t\t%s\t%s\n", l.Key, human(l.Size), age(now, l.LastUsed))
		}
	}
	fmt.Fprintf(tw, "\nIMAGES\t\t\t\t\tSIZE\tBUILT\n")
	images, _ := os.ReadDir(filepath.Join(info.Dir, "images"))
	total = 0
	for _, e := range images {
		p := filepath.Join(info.Dir, "images", e.Name())
		var built time.Time
		if fi, err := os.Stat(filepath.Join(p, "image.json")); err == nil {
			built = fi.ModTime()
		}
		size := kernel.DiskUsage(p)
		total += size
		fmt.Fprintf(tw, "%s\t\t\t\t\t%s\t%s\n", e.Name(), human(size), age(now, built))
	}
	fmt.Fprintf(tw, "(%d)\t\t\t\t\t%s\t\n", len(images), human(total))
	fmt.Fprintf(tw, "\nCCACHE\t\t\t\t\t%s\t\n", human(kernel.DiskUsage(filepath.Join(info.Dir, "ccache"))))
	tw.Flush()
}

func printPrune(w io.Writer, res *kernel.PruneResult, dryRun bool, now time.Time) {
	verb := "removed"
	if dryRun {
		verb = "would remove"
	}
	for _, e := range res.Removed {
		fmt.Fprintf(w, "%s %s %s (%s, last used %s)\n", verb, e.Kind, e.Key, human(e.Size), age(now, e.LastUsed))
	}
	for _, e := range res.Skipped {
		fmt.Fprintf(w, "kept %s %s: in use (its lock is held)\n", e.Kind, e.Key)
	}
	fmt.Fprintf(w, "%s %d item(s), %s freed\n", verb, len(res.Removed), human(res.Freed))
}

func patchSummary(p []string) string {
	if len(p) == 0 {
		return "0"
	}
	return fmt.Sprintf("%d: %s", len(p), shorten(strings.Join(p, ", "), 60))
}

func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func inUse(b bool) string {
	if b {
		return " (in use)"
	}
	return ""
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
