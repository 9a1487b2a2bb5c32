BvJ±‚Ì?r<r>
	j?