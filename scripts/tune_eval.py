import sys, time
from spamlearn.evaluate import *
from spamlearn.classifier import Classifier
from spamlearn.tokenizer import TokenizerOptions
import spamlearn.features as F
entries = read_index('/tmp/corpus/spamassassin-public/full/index')
opts = TokenizerOptions(word_pairs='pairs' in sys.argv)
c = Classifier(tokenizer_options=opts, n_features=2**int(sys.argv[1]) if len(sys.argv)>1 else 2**21)
r = run_online(entries, c)
f = compute_figures(r)
print(f.as_dict())
