// Package archtest checks the module's structure: which packages the
// record's consumers may import, and that no package outgrows a quarter of
// the code. It has no code of its own besides its tests.
package archtest
