package guest

// Mix64 is the splitmix64 finalizer: a cheap bijective hash used to derive
// independent seeds from (seed, role, id) tuples.
func Mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Roles keep the random streams of different worker kinds apart even when
// they share the same seed and id.
const (
	roleWrite  uint64 = 0x7772697465 // "write"
	roleDefrag uint64 = 0x646566726167
	// roleE4defrag is "e4dfrg": the e4defrag tool worker's file choices.
	roleE4defrag uint64 = 0x653464667267
)

// DeriveSeed returns the stream seed for worker id of the given role.
func DeriveSeed(seed, role, id uint64) uint64 {
	return Mix64(Mix64(seed^role) ^ Mix64(id+0x9e3779b97f4a7c15))
}

// RNG is splitmix64: tiny state, fast and good enough for choosing blocks
// and generating payload.
type RNG struct{ state uint64 }

// NewRNG returns a generator seeded with seed.
func NewRNG(seed uint64) *RNG { return &RNG{state: seed} }

// Next returns the next 64 random bits.
func (r *RNG) Next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	return Mix64(r.state)
}

// Intn returns a value in [0, n); n must be > 0.
func (r *RNG) Intn(n int) int {
	// Modulo bias is irrelevant for picking blocks.
	return int(r.Next() % uint64(n))
}
