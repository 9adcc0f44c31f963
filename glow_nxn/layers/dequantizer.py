r"""Variational dequantisation (Flow++, Ho et al. 2019, §3.1) as a bijector that keeps every cell.

Uniform dequantisation (:mod:`glow_nxn.objectives`) scores an image ``x`` by the density of one
point ``y`` drawn uniformly from its cell ``[x/2^n − ½, (x+1)/2^n − ½)^D``, which bounds the
discrete code length from above, tightly only if the model's density is flat inside each cell.
A smooth flow's density is not: at the ends of the intensity range, behind the logit transform,
it rises steeply across a cell, and the bound pays the gap in every pixel.

:class:`VariationalDequantizer` maps each cell onto itself with a bijection ``g_x`` that depends
on the cell ``x`` (and its neighbours): a monotone rational-quadratic spline (Durkan et al.
2019) of the position inside the cell, which keeps both ends of the cell fixed. Put in front of
the flow ``p``, the whole model scores ``log p(g_x(y)) + log|det ∂g_x/∂y|`` for the same
uniform ``y``. Since ``g_x`` maps the cell onto
itself, the whole model gives every cell the probability ``p`` gives it,
``∫_cell p(g_x(y))|det ∂g_x/∂y| dy = ∫_cell p(y′) dy′``, and its bits/dim bound that code length
from above exactly as before; it equals Flow++'s variational bound with the dequantising
distribution ``q(y′ | x)`` the push-forward of the uniform one by ``g_x``. Sampling decodes latents
to ``y = g_x⁻¹(y′)``, in the cell of ``y′``: the same image.
"""
import tensorflow as tf

from glow_nxn.layers.base import Bijector, sum_over_pixels
from glow_nxn.layers.nn import CouplingNetwork
from glow_nxn.objectives import cell_index

# A float32 y near ½ resolves a position inside an 8-bit cell to ~2⁻¹⁷ of the cell, so a
# position closer to 1 than this would round into the next cell: outputs are kept below it.
_TOP = 1.0 - 2.0**-15


def _log_slope(xi, s, slope_left, slope_right):
    """``(log du′/du, denominator)`` of the spline at ``ξ`` in a bin of slope ``s`` (the formula
    of :class:`VariationalDequantizer`)."""
    between = xi * (1.0 - xi)
    denominator = s + (slope_right + slope_left - 2.0 * s) * between
    log_derivative = 2.0 * tf.math.log(s) - 2.0 * tf.math.log(denominator) + tf.math.log(
        slope_right * xi**2 + 2.0 * s * between + slope_left * (1.0 - xi) ** 2)
    return log_derivative, denominator


def _select(t, one_hot):
    """``t[..., k]`` at each element's bin ``k`` (``one_hot [..., K]``): a dense gradient."""
    return tf.reduce_sum(t * one_hot, axis=-1)


class VariationalDequantizer(Bijector):
    r"""``g_x`` of the module docstring, shapes ``[B, H, W, C] → [B, H, W, C]``.

    For ``y`` in ``[−½, ½)``: its cell ``k = floor((y + ½)·2^n)`` (clipped to ``0 .. 2^n − 1``)
    and its position ``u = (y + ½)·2^n − k ∈ [0, 1)``. A network of the cells,
    ``NN(k / 2^n − ½)`` (a :class:`~glow_nxn.layers.nn.CouplingNetwork` of ``width``: each
    pixel's map sees its 5×5 neighbourhood of cells), gives every element ``K = bins`` bin
    widths ``w = softmax(tanh(·))``, secant slopes ``s_i = r_i / Σ_j w_j r_j`` with
    ``r = exp(tanh(·))`` (so heights ``h_i = w_i s_i`` sum to 1), and ``K + 1`` knot slopes
    ``δ``, each its bins' secant (the geometric mean of the two inside) times
    ``exp(½·tanh(·))``; ``u′ = RQS(u)``, the monotone rational-quadratic spline through those
    knots from ``(0, 0)`` to ``(1, 1)``, and ``y′ = (k + u′)/2^n − ½``. At the default
    ``K = 4`` the bounds keep every derivative ``du′/du`` within ``[0.05, 10]`` (tested), so the
    inverse stays accurate in float32 and no part of a cell is squeezed to a point; a larger
    ``K`` widens them (a bin's width and secant can then be smaller). In the bin
    ``[x_i, x_i + w_i)`` → ``[y_i, y_i + h_i)`` with ``ξ = (u − x_i)/w_i``, ``s = h_i/w_i``:

    .. math::

        u′ = y_i + h_i \frac{s ξ^2 + δ_i ξ(1 − ξ)}{s + (δ_{i+1} + δ_i − 2s) ξ(1 − ξ)}, \quad
        \frac{du′}{du} = \frac{s^2 [δ_{i+1} ξ^2 + 2 s ξ(1 − ξ) + δ_i (1 − ξ)^2]}
                              {[s + (δ_{i+1} + δ_i − 2s) ξ(1 − ξ)]^2},

    and the log-det is ``Σ log du′/du`` over every element. The inverse solves the quadratic in
    ``ξ`` in closed form; ``NN`` reads only the cells, which ``g`` keeps, so it recomputes from
    ``y′``. The network's last convolution starts at zero: equal bins and slopes 1, ``g`` the
    identity, the model the same flow under uniform dequantisation. A ``y`` outside
    ``[−½, ½)``, as a decoded sample may be, is taken to the nearest cell. Positions are kept
    below ``1 − 2⁻¹⁵`` of a cell (``_TOP``), in and out: the top ``2⁻¹⁵`` of each cell, which a
    uniform draw reaches about once in 30,000 values, maps to one point there, with the
    log-det of that point; a bijection everywhere else. The network computes in float32
    whatever the coupling networks' ``network_dtype``: it is small and reads only cells.

    ``n_bits``: the bits per channel of the cells (the model's); ``width``: the network's width;
    ``bins``: the spline's ``K``.
    """

    def __init__(self, n_bits, width, bins=4, **kwargs):
        super().__init__(**kwargs)
        self.n_bits, self.cells = n_bits, 2.0**n_bits
        self.width, self.bins = width, bins

    def build(self, input_shape):
        self.channels = int(input_shape[-1])
        self.network = CouplingNetwork(self.channels * (3 * self.bins + 1), self.width)

    def _cell_and_position(self, y):
        cell = tf.stop_gradient(cell_index(y, self.n_bits))
        return cell, tf.clip_by_value((y + 0.5) * self.cells - cell, 0.0, _TOP)

    def _spline(self, cell):
        """Knots of every element's spline: ``(x, w, y, h, δ_left, δ_right)``, each ``[..., K]``."""
        raw = self.network(cell / self.cells - 0.5)
        raw = tf.reshape(raw, [*tf.unstack(tf.shape(raw)[:3]), self.channels, 3 * self.bins + 1])
        raw_widths, raw_ratios, raw_slopes = tf.split(raw, [self.bins, self.bins, self.bins + 1],
                                                      axis=-1)
        widths = tf.nn.softmax(tf.tanh(raw_widths))
        ratios = tf.exp(tf.tanh(raw_ratios))
        secants = ratios / tf.reduce_sum(widths * ratios, axis=-1, keepdims=True)
        heights = widths * secants
        # Each knot's slope is within a factor e^½ of its bins' secant (the geometric mean of the
        # two inside, the bin's own at the ends), so no bin's curve dips far below both.
        neighbours = tf.concat([secants[..., :1], tf.sqrt(secants[..., 1:] * secants[..., :-1]),
                                secants[..., -1:]], axis=-1)
        slopes = neighbours * tf.exp(0.5 * tf.tanh(raw_slopes))
        lefts = tf.math.cumsum(widths, axis=-1, exclusive=True)
        bottoms = tf.math.cumsum(heights, axis=-1, exclusive=True)
        return lefts, widths, bottoms, heights, slopes[..., :-1], slopes[..., 1:]

    def _bin_knots(self, y, output_side):
        """``(cell, position, knots)`` of ``y``: the knots of the spline's bin that each position
        lies in, as :meth:`_spline` orders them, each ``[...]``; the bins are those of the input
        side (the forward's), or with ``output_side`` those of the output side (the inverse's)."""
        cell, position = self._cell_and_position(y)
        knots = self._spline(cell)
        starts = knots[2] if output_side else knots[0]
        index = tf.reduce_sum(tf.cast(position[..., None] >= starts[..., 1:], tf.int32), axis=-1)
        one_hot = tf.one_hot(index, self.bins)
        return cell, position, [_select(t, one_hot) for t in knots]

    def _to_y(self, cell, position):
        return (cell + tf.clip_by_value(position, 0.0, _TOP)) / self.cells - 0.5

    def _forward(self, y):
        cell, u, knots = self._bin_knots(y, output_side=False)
        left, width, bottom, height, slope_left, slope_right = knots
        s = height / width
        xi = (u - left) / width
        log_derivative, denominator = _log_slope(xi, s, slope_left, slope_right)
        u_new = bottom + height * (s * xi**2 + slope_left * xi * (1.0 - xi)) / denominator
        return self._to_y(cell, u_new), sum_over_pixels(log_derivative)

    def _inverse(self, y_new):
        cell, v, knots = self._bin_knots(y_new, output_side=True)
        left, width, bottom, height, slope_left, slope_right = knots
        s = height / width
        rise = v - bottom
        curvature = slope_right + slope_left - 2.0 * s
        a = height * (s - slope_left) + rise * curvature
        b = height * slope_left - rise * curvature
        c = -s * rise
        # The root in [0, 1] of a ξ² + b ξ + c, by whichever of the two forms subtracts no
        # nearly equal numbers: 2c / (−b − √D) for b ≥ 0 (finite when a = 0), (−b + √D) / 2a
        # for b < 0 (then a > 0). Each form's denominator is replaced where it is not used.
        root = tf.sqrt(tf.maximum(b * b - 4.0 * a * c, 0.0))
        positive = b >= 0.0
        xi = tf.where(positive, 2.0 * c / tf.where(positive, -b - root, -1.0),
                      (root - b) / tf.where(positive, 1.0, 2.0 * a))
        xi = tf.clip_by_value(xi, 0.0, 1.0)
        log_derivative, _ = _log_slope(xi, s, slope_left, slope_right)
        return self._to_y(cell, left + xi * width), -sum_over_pixels(log_derivative)
