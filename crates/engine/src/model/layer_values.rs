//! One layer's values for one image, handed on as the forward pass left
//! them: a single image's output tensor is kept as tract allocated it
//! (copying it out cost a few percent of a pass for the demo's 12 layers),
//! anything else holds a vector of its own.

use std::ops::Deref;
use std::sync::Arc;

use tract_onnx::prelude::*;

/// The f32 values of one layer for one image, row-major in the layer's
/// shape; reads as a `&[f32]`.
#[derive(Debug, Clone)]
pub struct LayerValues(Storage);

#[derive(Debug, Clone)]
enum Storage {
    /// A whole output tensor of tract's, f32 in plain memory (checked when
    /// made).
    Tensor(Arc<Tensor>),
    /// Values of their own: pixels, pooled values, one image of a batch.
    Owned(Vec<f32>),
}

impl LayerValues {
    /// The whole of `tensor` when it holds f32 values in plain memory;
    /// otherwise its values converted to f32 in a vector of their own.
    pub fn from_tensor(tensor: Tensor) -> TractResult<LayerValues> {
        let plain_f32 = tensor.datum_type() == f32::datum_type()
            && tensor
                .try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>().map(|_| ()))
                .is_ok();
        if plain_f32 {
            return Ok(LayerValues(Storage::Tensor(Arc::new(tensor))));
        }
        let cast = tensor.cast_to::<f32>()?;
        let view = cast.try_as_plain_ram()?;
        Ok(LayerValues::from(view.as_slice::<f32>()?.to_vec()))
    }

    /// The values as a vector of their own (a copy when they are a
    /// tensor's).
    pub fn into_vec(self) -> Vec<f32> {
        match self.0 {
            Storage::Owned(values) => values,
            Storage::Tensor(_) => self.to_vec(),
        }
    }
}

impl From<Vec<f32>> for LayerValues {
    fn from(values: Vec<f32>) -> LayerValues {
        LayerValues(Storage::Owned(values))
    }
}

impl Default for LayerValues {
    fn default() -> LayerValues {
        LayerValues::from(Vec::new())
    }
}

impl Deref for LayerValues {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &self.0 {
            Storage::Owned(values) => values,
            // `from_tensor` checked that this view exists; the tensor is
            // shared and never changed afterwards.
            Storage::Tensor(tensor) => tensor
                .try_as_plain_ram()
                .and_then(|view| view.as_slice::<f32>())
                .expect("a tensor checked as plain f32 when kept"),
        }
    }
}

impl PartialEq for LayerValues {
    fn eq(&self, other: &LayerValues) -> bool {
        **self == **other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tensor_reads_as_its_values_without_a_copy() {
        let values: Vec<f32> = (0..24).map(|i| i as f32 / 2.0).collect();
        let tensor = Tensor::from_shape(&[2, 3, 4], &values).unwrap();
        let data = tensor
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .as_ptr();
        let kept = LayerValues::from_tensor(tensor).unwrap();
        assert_eq!(&*kept, &values[..]);
        assert_eq!(kept.as_ptr(), data, "the tensor's own memory");
        assert_eq!(kept.clone().into_vec(), values);
        assert_eq!(kept, LayerValues::from(values));
    }

    #[test]
    fn another_type_is_converted_to_f32() {
        let tensor = Tensor::from_shape(&[3], &[1u8, 2, 255]).unwrap();
        let kept = LayerValues::from_tensor(tensor).unwrap();
        assert_eq!(&*kept, &[1.0, 2.0, 255.0]);
    }
}
