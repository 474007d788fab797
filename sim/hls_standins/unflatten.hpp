// unflatten(): the inverse of finn-hlslib's flatten(), which FINN 1.6's npy2apintstream.hpp calls to
// unpack a layer's output words. finn-hlslib checkouts older than the commit finn-plus pins lack it;
// sim/cppsim.py then includes this after their flatten.hpp (in the build folder, never in finn-hlslib).
// Project-written.
#ifndef FINN_SIM_UNFLATTEN_HPP
#define FINN_SIM_UNFLATTEN_HPP

#include <cstdint>
#include <cstring>
#include <type_traits>

template<typename T, int W> struct unflatten_elem {
	static T from(ap_uint<W> const &bits) {
		static_assert(std::is_integral<T>::value, "unflatten: no bit-image conversion for this element type");
		return std::is_signed<T>::value ? T(ap_int<W>(bits).to_int64()) : T(bits.to_uint64());
	}
};
template<int W> struct unflatten_elem<ap_uint<W>, W> {
	static ap_uint<W> from(ap_uint<W> const &bits) { return bits; }
};
template<int W> struct unflatten_elem<ap_int<W>, W> {
	static ap_int<W> from(ap_uint<W> const &bits) { return ap_int<W>(bits); }  // same width: bits kept
};
template<int W, int I, ap_q_mode Q, ap_o_mode O, int N> struct unflatten_elem<ap_fixed<W, I, Q, O, N>, W> {
	static ap_fixed<W, I, Q, O, N> from(ap_uint<W> const &bits) {
		ap_fixed<W, I, Q, O, N> r;
		r.range(W - 1, 0) = bits;
		return r;
	}
};
template<int W, int I, ap_q_mode Q, ap_o_mode O, int N> struct unflatten_elem<ap_ufixed<W, I, Q, O, N>, W> {
	static ap_ufixed<W, I, Q, O, N> from(ap_uint<W> const &bits) {
		ap_ufixed<W, I, Q, O, N> r;
		r.range(W - 1, 0) = bits;
		return r;
	}
};
template<typename F, typename U, int W> F unflatten_float(ap_uint<W> const &bits) {
	U const u = U(bits.to_uint64());
	F f;
	std::memcpy(&f, &u, sizeof f);
	return f;
}
template<> struct unflatten_elem<float, 32> {
	static float from(ap_uint<32> const &b) { return unflatten_float<float, uint32_t>(b); }
};
template<> struct unflatten_elem<double, 64> {
	static double from(ap_uint<64> const &b) { return unflatten_float<double, uint64_t>(b); }
};
template<> struct unflatten_elem<half, 16> {
	static half from(ap_uint<16> const &b) { return unflatten_float<half, uint16_t>(b); }
};

// Element j takes bits [(j+1)W-1 : jW], as flatten() packs them.
template<typename T, size_t N, int WF>
void unflatten(T (&buffer)[N], ap_uint<WF> const &flat) {
	constexpr int W = width_v<T>;
	static_assert(WF >= int(N) * W, "unflatten: packed word narrower than the buffer");
	for(size_t j = 0; j < N; j++) {
		buffer[j] = unflatten_elem<T, W>::from(ap_uint<W>(flat((j + 1) * W - 1, j * W)));
	}
}

#endif
