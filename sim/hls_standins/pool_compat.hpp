// Project-written compatibility layer for finn-hlslib checkouts older than the one finn-plus 1.6 pins
// (8d979e2). FINN 1.6 generates pooling layers against the newer interface:
//     MaxPoolFunction<hls::vector<T, PE>> pool_fxn;   (also AccPool, AvgPool<TO, TA, n>, QuantAvgPool<TO, TA, s>)
//     Pool_batch<ISIZE, K>(in, out, pool_fxn);        // ISIZE input words, every K consecutive ones pooled
// while older checkouts define the pool functions on scalars (pool.hpp) and a Pool_batch with channel and
// PE parameters (maxpool.h). sim/cppsim.py compiles against a folder of links to the checkout in which this
// file stands as pool.hpp; the old Pool_batch (four arguments) stays available as an overload.
// Semantics as FINN's Python model of the Pool layer: the max / sum / sum-divided / sum-shifted of the K
// window elements, element by element over the PE lanes.
#ifndef BNN_COMPAT_POOL_HPP
#define BNN_COMPAT_POOL_HPP
#include <hls_stream.h>
#include <hls_vector.h>
#include <type_traits>
#include <utility>

namespace bnn_compat {
template <typename E>
E lowest() {  // the smallest value of an ap_int / ap_uint element
  E v = 0;
  if (E(-1) < E(0)) {
    v = 1;
    v <<= (E::width - 1);
  }
  return v;
}
}  // namespace bnn_compat

template <typename TV>
class MaxPoolFunction {
 public:
  using E = typename std::remove_reference<decltype(std::declval<TV &>()[0])>::type;
  TV init() const {
    TV v;
    for (unsigned i = 0; i < TV::size(); i++) v[i] = bnn_compat::lowest<E>();
    return v;
  }
  template <typename TI>
  TV pool(TI const &in, TV const &acc) const {
    TV r;
    for (unsigned i = 0; i < TV::size(); i++) r[i] = E(in[i]) > acc[i] ? E(in[i]) : acc[i];
    return r;
  }
  TV activate(TV const &acc) const { return acc; }
};

// Sum in TA (the accumulator vector), out as TO after `finish`.
template <typename TO, typename TA>
class SumPoolBase {
 public:
  using EA = typename std::remove_reference<decltype(std::declval<TA &>()[0])>::type;
  using EO = typename std::remove_reference<decltype(std::declval<TO &>()[0])>::type;
  TA init() const { return TA(EA(0)); }
  template <typename TI>
  TA pool(TI const &in, TA const &acc) const {
    TA r;
    for (unsigned i = 0; i < TA::size(); i++) r[i] = acc[i] + EA(in[i]);
    return r;
  }
};

template <typename TV>
class AccPoolFunction : public SumPoolBase<TV, TV> {
 public:
  TV activate(TV const &acc) const { return acc; }
};

template <typename TO, typename TA, unsigned size>
class AvgPoolFunction : public SumPoolBase<TO, TA> {
 public:
  TO activate(TA const &acc) const {
    TO r;
    for (unsigned i = 0; i < TO::size(); i++) r[i] = typename SumPoolBase<TO, TA>::EO(acc[i] / size);
    return r;
  }
};

template <typename TO, typename TA, unsigned shift>
class QuantAvgPoolFunction : public SumPoolBase<TO, TA> {
 public:
  TO activate(TA const &acc) const {
    TO r;
    for (unsigned i = 0; i < TO::size(); i++) r[i] = typename SumPoolBase<TO, TA>::EO(acc[i] >> shift);
    return r;
  }
};

template <unsigned ISIZE, unsigned K, typename TI, typename TO, typename F>
void Pool_batch(hls::stream<TI> &in, hls::stream<TO> &out, F const &fxn) {
  static_assert(ISIZE % K == 0, "Pool_batch: ISIZE must be a multiple of K");
  for (unsigned o = 0; o < ISIZE / K; o++) {
    auto acc = fxn.init();
    for (unsigned k = 0; k < K; k++) acc = fxn.pool(in.read(), acc);
    out.write(fxn.activate(acc));
  }
}
#endif
