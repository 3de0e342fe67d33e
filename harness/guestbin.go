package harness

import "context"

// EnsureGuest returns the static pbguest binary: prebuilt when given, else
// built from this source tree into the cache (as `patchbay run` does).
func EnsureGuest(ctx context.Context, cacheDir, prebuilt string) (string, error) {
	return ensureGuest(ctx, Options{CacheDir: cacheDir, GuestBin: prebuilt})
}
