"""Reading digits in people's images: decoding, preprocessing, engines and the Recognizer. Never imports PyTorch."""
