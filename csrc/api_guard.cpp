// Calls into DuckDB's C API that allocate, wrapped in try/catch.
//
// DuckDB's C API functions are C++ underneath: when an allocation passes
// the memory limit they throw (OutOfMemoryException, std::bad_alloc). An
// exception that reaches Rust frames aborts the whole host process ("Rust
// cannot catch foreign exceptions"), so every allocating call the extension
// makes goes through one of these wrappers, which call the C API function
// pointer directly from C++ and turn an exception into a status and a
// message. No Rust frame is ever between the throw and the catch.
//
// Written by hand because no crate offers it: the function pointers come
// from DuckDB's extension API table at load time.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>

namespace {

void copy_message(const char *what, char *buffer, std::size_t capacity) {
    if (buffer == nullptr || capacity == 0) {
        return;
    }
    std::size_t len = std::strlen(what);
    if (len >= capacity) {
        len = capacity - 1;
    }
    std::memcpy(buffer, what, len);
    buffer[len] = '\0';
}

// Runs `call`; 0 = it returned success, 1 = it returned an error state,
// 2 = it threw (the message is in `buffer`).
template <typename Call>
int guarded(Call call, char *buffer, std::size_t capacity) {
    try {
        return call() == 0 ? 0 : 1;
    } catch (const std::bad_alloc &) {
        copy_message("out of memory", buffer, capacity);
    } catch (const std::exception &e) {
        copy_message(e.what(), buffer, capacity);
    } catch (...) {
        copy_message("unknown C++ exception", buffer, capacity);
    }
    return 2;
}

} // namespace

extern "C" {

typedef void *lc_vector;
typedef std::uint64_t lc_idx;
typedef int (*lc_list_size_fn)(lc_vector, lc_idx);
typedef void (*lc_assign_fn)(lc_vector, lc_idx, const char *, lc_idx);

// duckdb_list_vector_reserve or duckdb_list_vector_set_size.
int layercorr_guarded_list_size(lc_list_size_fn fn, lc_vector vector, lc_idx size,
                                char *buffer, std::size_t capacity) {
    return guarded([&] { return fn(vector, size); }, buffer, capacity);
}

// duckdb_vector_assign_string_element_len.
int layercorr_guarded_assign(lc_assign_fn fn, lc_vector vector, lc_idx row,
                             const char *data, lc_idx len, char *buffer,
                             std::size_t capacity) {
    return guarded(
        [&] {
            fn(vector, row, data, len);
            return 0;
        },
        buffer, capacity);
}

} // extern "C"
