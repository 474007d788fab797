// Project stand-in for Vitis HLS's hls_vector.h in C simulation: the element access and
// construction that finn-hlslib and FINN's npy2vectorstream use.
#ifndef BNN_STANDIN_HLS_VECTOR_H
#define BNN_STANDIN_HLS_VECTOR_H
#include <array>
#include <cstddef>
namespace hls {
template <typename T, size_t N>
class vector {
  std::array<T, N> data_{};
 public:
  vector() = default;
  vector(T const &v) { data_.fill(v); }
  T &operator[](size_t i) { return data_[i]; }
  T const &operator[](size_t i) const { return data_[i]; }
  static constexpr size_t size() { return N; }
  bool operator==(vector const &o) const { return data_ == o.data_; }
};
}  // namespace hls
#endif
