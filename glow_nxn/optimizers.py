r"""Adam and Adamax that update each variable with one fused kernel.

tf-keras 2.18's ``Adam.update_step`` builds about twenty operations per variable and step (the
bias corrections are computed again for every variable; the moments and the update are six
element-wise passes and three assignments). A flow has many small variables (every ActNorm,
mixing and coupling of every step: 344 at issue 10's shape R1, 2,705 at the celeba_hq_256
preset), so those operations cost trace time and, on a CPU, a share of every step.
:class:`Adam` and :class:`Adamax` keep Keras's optimizers, their slots (``m``/``v``, ``m``/``u``:
checkpoints are unchanged) and their update rule, and compute the step's scalars once, then
update every variable with TensorFlow's own fused training kernel (``ResourceApplyAdam``,
``ResourceApplyAdaMax``: one pass over ``θ, m, v, g``; CPU, GPU and XLA kernels). With
``t = iterations + 1``, learning rate ``η``, ``β₁, β₂, ε``:

.. math::  m ← m + (1-β_1)(g - m),\quad v ← v + (1-β_2)(g^2 - v),\quad
           θ ← θ - η\,\frac{\sqrt{1-β_2^t}}{1-β_1^t}\,\frac{m}{\sqrt v + ε}\qquad\text{(Adam)}

.. math::  m ← m + (1-β_1)(g - m),\quad u ← \max(β_2 u, |g|),\quad
           θ ← θ - \frac{η}{1-β_1^t}\,\frac{m}{u + ε}\qquad\text{(Adamax)}

the formulas of Keras's ``update_step`` (tests/test_training.py compares both to float32
rounding). Every gradient is applied as a dense tensor (the models here have no sparse
gradients). Keras's own ``use_ema``, ``amsgrad`` and weight decay are not supported: the weight
average is :class:`glow_nxn.averaging.WeightAverage`.
"""
import tensorflow as tf

from glow_nxn.keras import keras


class _FusedUpdate:
    """Mixin over a Keras 2 optimizer: one fused kernel per variable, scalars computed once.

    Overrides the method through which tf-keras's ``apply_gradients`` updates the variables
    (``_distributed_apply_gradients_fn``; tf-keras is pinned, and tests/test_training.py checks
    that the traced update holds the fused kernels and none of Keras's assignments). A subclass
    names its ``_kernel``, the Keras attributes holding its two slot lists (``_slot_lists``) and
    the kernel's scalar arguments (``_step_scalars(t)``)."""

    def _distributed_apply_gradients_fn(self, distribution, grads_and_vars, **kwargs):
        scalars = self._step_scalars(tf.cast(self.iterations + 1, tf.float32))

        def apply(variable, gradient):
            index = self._index_dict[self._var_key(variable)]
            first, second = (getattr(self, name)[index] for name in self._slot_lists)
            return self._kernel(var=variable.handle, m=first.handle, v=second.handle,
                                grad=tf.convert_to_tensor(gradient), **scalars)

        for gradient, variable in grads_and_vars:
            distribution.extended.update(variable, apply, args=(gradient,), group=False)
        return self.iterations.assign_add(1)

    def _scalars(self, t, **extra):
        """The arguments both kernels take (β₁ᵗ, η, β₁, β₂, ε) as float32, and ``extra``."""
        def f32(value):
            return tf.cast(value, tf.float32)
        return dict(beta1_power=tf.pow(f32(self.beta_1), t), lr=f32(self.learning_rate),
                    beta1=f32(self.beta_1), beta2=f32(self.beta_2), epsilon=f32(self.epsilon),
                    **extra)


class Adam(_FusedUpdate, keras.optimizers.Adam):
    """Keras's Adam (default β₁ = 0.9, β₂ = 0.999, ε = 1e-7) with ``ResourceApplyAdam``."""

    _kernel = staticmethod(tf.raw_ops.ResourceApplyAdam)
    _slot_lists = ("_momentums", "_velocities")

    def _step_scalars(self, t):
        return self._scalars(t, beta2_power=tf.pow(tf.cast(self.beta_2, tf.float32), t))


class Adamax(_FusedUpdate, keras.optimizers.Adamax):
    """Keras's Adamax (default β₁ = 0.9, β₂ = 0.999, ε = 1e-7) with ``ResourceApplyAdaMax``."""

    _kernel = staticmethod(tf.raw_ops.ResourceApplyAdaMax)
    _slot_lists = ("_m", "_u")

    def _step_scalars(self, t):
        return self._scalars(t)
