//! The front end's global allocator: mimalloc, called the way its plain
//! `malloc` is fast.
//!
//! The `mimalloc` crate's allocator passes every request to
//! `mi_malloc_aligned`, even for alignments `mi_malloc` always meets. In
//! mimalloc 3, that call's fast path only covers blocks of up to 1 KiB;
//! a larger block whose size class is not a power of two (a 7 KB reply
//! buffer, a header map) falls through to the over-allocating path:
//! ~240 instructions and a wasted alignment's worth of bytes, about 2.4
//! times per request (bench/callgrind --front-end). Here, an alignment
//! that `mi_malloc` guarantees (at most 16 bytes, and no more than the
//! size, the same rule as Rust's `System` allocator) goes to `mi_malloc`,
//! `mi_zalloc` and `mi_realloc`; any other to the aligned calls.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment `mi_malloc` gives every block of at least this size
/// (`MI_MAX_ALIGN_SIZE`, `sizeof(max_align_t)` on 64-bit targets): its size
/// classes from 16 bytes up are multiples of 16 and its pages start
/// 16-aligned. The one smaller class, 8 bytes, is 8-aligned, so
/// `align <= size` covers the layouts below 16 bytes.
const PLAIN_ALIGN: usize = 16;

#[derive(Debug)]
pub struct Mimalloc;

fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every block comes from mimalloc and goes back to `mi_free`
// (which takes aligned and plain blocks alike); the plain calls are only
// used where their alignment guarantee covers the layout's.
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size and alignment a program asks for comes back aligned,
    /// writable over its whole length, and keeps its bytes across a
    /// realloc that grows or shrinks it (through the plain and the
    /// aligned calls both).
    #[test]
    fn blocks_are_aligned_and_keep_their_bytes() {
        let a = Mimalloc;
        let sizes: [usize; 15] = [
            1, 7, 8, 12, 15, 16, 17, 24, 40, 100, 1024, 1025, 4000, 7000, 70_000,
        ];
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for &size in &sizes {
                // Sizes that are not multiples of the alignment too
                // (a `Layout` allows them): 17 bytes at 16, 7 at 4.
                let size = size.max(align);
                let layout = Layout::from_size_align(size, align).unwrap();
                unsafe {
                    for new_size in [size * 3, (size / 2).max(1)] {
                        let p = a.alloc(layout);
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        for i in 0..size {
                            *p.add(i) = i as u8;
                        }
                        let q = a.realloc(p, layout, new_size);
                        assert!(!q.is_null());
                        assert_eq!(
                            q as usize % align,
                            0,
                            "realloc {size} -> {new_size} align {align}"
                        );
                        for i in 0..size.min(new_size) {
                            assert_eq!(
                                *q.add(i),
                                i as u8,
                                "byte {i} after realloc {size} -> {new_size}"
                            );
                        }
                        a.dealloc(q, Layout::from_size_align(new_size, align).unwrap());
                    }
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!(
                        (0..size).all(|i| *z.add(i) == 0),
                        "zeroed {size} align {align}"
                    );
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
