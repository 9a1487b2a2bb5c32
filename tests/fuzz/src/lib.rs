//! Shared by the fuzz targets: what each target calls ([`targets`]) and the allocation limit
//! every target runs under ([`LimitedAlloc`]).

pub mod targets;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// Largest single allocation a target may make; matches `-malloc_limit_mb` in run.sh.
///
/// libFuzzer enforces `-malloc_limit_mb` through sanitizer malloc hooks, which a build without
/// a sanitizer (`-s none`, what run.sh uses to fit the CI budget) does not have. Worse, a huge
/// zeroed `Vec` never touches its pages, so `-rss_limit_mb` does not see it either. Checking
/// the size here makes "a hostile input allocates without bound" a crash in every build.
pub const MAX_ALLOCATION: usize = 512 << 20;

/// The system allocator, aborting on any single request above [`MAX_ALLOCATION`].
pub struct LimitedAlloc;

impl LimitedAlloc {
    fn check(size: usize) {
        if size > MAX_ALLOCATION {
            // No formatting: it could allocate, and we are inside the allocator.
            let _ = std::io::stderr().write_all(b"==fuzz== allocation above MAX_ALLOCATION (512 MiB): unbounded allocation\n");
            std::process::abort();
        }
    }
}

// SAFETY: forwards every call to `System` unchanged after a size check that does not allocate.
unsafe impl GlobalAlloc for LimitedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
