package images

import (
	"slices"
	"testing"
)

func TestWithPackagesKeepsTheStockKey(t *testing.T) {
	stock := DefaultRecipe()
	if got := stock.WithPackages().key(); got != stock.key() {
		t.Errorf("no extras: key %s, want the stock key %s", got, stock.key())
	}
	if got := stock.WithPackages("e2fsprogs").key(); got != stock.key() {
		t.Errorf("a package the recipe already has: key %s, want the stock key %s", got, stock.key())
	}
	fio := stock.WithPackages("fio", "fio")
	if fio.key() == stock.key() {
		t.Error("extra package fio: the image key did not change")
	}
	if n := len(fio.Packages); n != len(stock.Packages)+1 || fio.Packages[n-1] != "fio" {
		t.Errorf("packages %v: want the stock list plus fio once", fio.Packages)
	}
	if slices.Contains(DefaultRecipe().Packages, "fio") || slices.Contains(stock.Packages, "fio") {
		t.Error("WithPackages changed the recipe it was called on")
	}
}
