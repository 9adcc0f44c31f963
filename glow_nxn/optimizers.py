r"""Adam and Adamax that update each variable with one fused kernel.

tf-keras 2.18's ``Adam.update_step`` builds about twenty operations per variable and step (the
bias corrections are computed again for every variable; the moments and the update are six
element-wise passes and three assignments). A flow has many small variables (every ActNorm,
mixing and coupling of every step: 344 at issue 10's shape R1, about 2,400 at the celeba_hq_256
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
    that the traced update holds the fused kernels and none of Keras's assignments)."""

    def _distributed_apply_gradients_fn(self, distribution, grads_and_vars, **kwargs):
        scalars = self._step_scalars(tf.cast(self.iterations + 1, tf.float32))

        def apply(variable, gradient):
            slots = self._slots_of(variable)
            return self._fused_apply(variable, slots, tf.convert_to_tensor(gradient), scalars)

        for gradient, variable in grads_and_vars:
            distribution.extended.update(variable, apply, args=(gradient,), group=False)
        return self.iterations.assign_add(1)

    def _scalar(self, value):
        return tf.cast(value, tf.float32)


class Adam(_FusedUpdate, keras.optimizers.Adam):
    """Keras's Adam (default β₁ = 0.9, β₂ = 0.999, ε = 1e-7) with ``ResourceApplyAdam``."""

    def _step_scalars(self, t):
        return dict(beta1_power=tf.pow(self._scalar(self.beta_1), t),
                    beta2_power=tf.pow(self._scalar(self.beta_2), t),
                    lr=self._scalar(self.learning_rate), beta1=self._scalar(self.beta_1),
                    beta2=self._scalar(self.beta_2), epsilon=self._scalar(self.epsilon))

    def _slots_of(self, variable):
        index = self._index_dict[self._var_key(variable)]
        return self._momentums[index], self._velocities[index]

    def _fused_apply(self, variable, slots, gradient, scalars):
        m, v = slots
        return tf.raw_ops.ResourceApplyAdam(var=variable.handle, m=m.handle, v=v.handle,
                                            grad=gradient, **scalars)


class Adamax(_FusedUpdate, keras.optimizers.Adamax):
    """Keras's Adamax (default β₁ = 0.9, β₂ = 0.999, ε = 1e-7) with ``ResourceApplyAdaMax``."""

    def _step_scalars(self, t):
        return dict(beta1_power=tf.pow(self._scalar(self.beta_1), t),
                    lr=self._scalar(self.learning_rate), beta1=self._scalar(self.beta_1),
                    beta2=self._scalar(self.beta_2), epsilon=self._scalar(self.epsilon))

    def _slots_of(self, variable):
        index = self._index_dict[self._var_key(variable)]
        return self._m[index], self._u[index]

    def _fused_apply(self, variable, slots, gradient, scalars):
        m, u = slots
        return tf.raw_ops.ResourceApplyAdaMax(var=variable.handle, m=m.handle, v=u.handle,
                                              grad=gradient, **scalars)
